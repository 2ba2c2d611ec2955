//! How a point in time travels between Rust and either database, so that the SQL written once
//! (`store/sql/`) binds and reads times the same way on both: `timestamptz` on Postgres,
//! microseconds since the epoch in an `INTEGER` on SQLite. JSON travels as
//! `sqlx::types::Json` (`jsonb` on Postgres, text on SQLite), ids as `uuid` / a 16-byte blob.

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type, encode::IsNull};

/// A time column or parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub DateTime<Utc>);

impl Time {
    /// Now, by this process's clock.
    pub fn now() -> Time {
        Time(Utc::now())
    }
}

/// Microseconds from the Unix epoch to Postgres's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl Type<Postgres> for Time {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl sqlx::postgres::PgHasArrayType for Time {
    fn array_type_info() -> PgTypeInfo {
        <DateTime<Utc> as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for Time {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// Read without panicking: sqlx's own decoder panics on values chrono cannot hold
/// ('infinity', or beyond year 262143), which would drop the connection of every request that
/// reads such a row. Here they are an error naming the column.
impl<'r> Decode<'r, Postgres> for Time {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value
                    .as_bytes()?
                    .try_into()
                    .map_err(|_| "a timestamptz is 8 bytes")?;
                i64::from_be_bytes(bytes)
                    .checked_add(PG_EPOCH_UNIX_MICROS)
                    .and_then(DateTime::from_timestamp_micros)
                    .map(Time)
                    .ok_or_else(|| "time out of range".into())
            }
            // Text comes only from simple queries; chrono's parser fails rather than panics.
            PgValueFormat::Text => {
                <DateTime<chrono::FixedOffset> as Decode<Postgres>>::decode(value)
                    .map(|t| Time(t.with_timezone(&Utc)))
            }
        }
    }
}

impl Type<Sqlite> for Time {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Time {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Time {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Time)
            .ok_or_else(|| "time out of range".into())
    }
}
