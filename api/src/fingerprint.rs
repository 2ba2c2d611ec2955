//! Error fingerprints: an error's text with what differs between two occurrences of one
//! failure set aside, so that `GET /failures` groups them (and the dashboard shows a handful
//! of rows for thousands of failed jobs).

use sha2::{Digest, Sha256};

/// The longest normalised text kept (and fingerprinted).
pub const PATTERN_CHARS: usize = 300;

/// 16 hex digits of the SHA-256 of a pattern.
pub fn fingerprint_of(pattern: &str) -> String {
    let digest = Sha256::digest(pattern.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The error with what varies between occurrences replaced: a quoted value (`"…"`, `'…'`,
/// `` `…` ``) by `"…"`; a word with a digit in it (a number, an id, a digest, an address with
/// its port) by `#`, words being letters, digits and `_ - . :`; runs of whitespace by one
/// space. At most [`PATTERN_CHARS`] characters.
pub fn normalise(error: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            // Keep a word's trailing punctuation ("port 5432." → "port #.").
            let tail: String = word
                .chars()
                .rev()
                .take_while(|c| matches!(c, '.' | ':'))
                .collect();
            out.push('#');
            out.extend(tail.chars().rev());
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    let mut chars = error.chars().peekable();
    let mut previous: Option<char> = None;
    while let Some(c) = chars.next() {
        let quote = matches!(c, '"' | '\'' | '`')
            && word.is_empty()
            && !previous.is_some_and(char::is_alphanumeric);
        if quote && chars.clone().any(|next| next == c) {
            for next in chars.by_ref() {
                if next == c {
                    break;
                }
            }
            out.push_str("\"…\"");
        } else if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            if c.is_whitespace() {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
        }
        previous = Some(c);
        if out.chars().count() >= PATTERN_CHARS {
            break;
        }
    }
    flush(&mut word, &mut out);
    let out = out.trim_end();
    out.chars().take(PATTERN_CHARS).collect()
}
