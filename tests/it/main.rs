//! End-to-end tests of the real `longshore` binary: crashes, poison jobs, shutdown, config.

mod browser;
mod support;

mod api;
mod cli;
mod crash;
mod dashboard;
mod faults;
mod hostile_http;
mod lifecycle;
mod maintenance;
mod newcomer;
mod otel;
mod poison;
mod push;
mod schedules;
mod sigterm;
mod sweeps;
mod tour;
mod webhooks;
