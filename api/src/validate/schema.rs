//! The JSON Schema subset poem-openapi writes, checked against a value and described in
//! plain words.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use super::field_error;
use crate::problem::FieldError;

/// The named schemas of the spec (`#/components/schemas`).
#[derive(Default)]
pub(super) struct Schemas(pub Map<String, Value>);

impl Schemas {
    /// Checks a parameter's text as the value of its schema's type.
    pub(super) fn check_text(&self, schema: &Value, text: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        let quoted = || Value::String(text.to_owned());
        let value = match schema["type"].as_str() {
            Some("integer") => text
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| quoted()),
            Some("number") => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(quoted, Value::Number),
            Some("boolean") => text.parse::<bool>().map_or_else(|_| quoted(), Value::Bool),
            _ => quoted(),
        };
        let mut errors = Vec::new();
        self.check_value(schema, &value, "", &mut errors);
        errors.into_iter().next().map_or(Ok(()), |e| Err(e.message))
    }

    /// Checks a JSON value, recording each invalid field under its path from `field`.
    pub(super) fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        field: &str,
        errors: &mut Vec<FieldError>,
    ) {
        let schema = self.resolve(schema);
        for part in schema["allOf"].as_array().into_iter().flatten() {
            self.check_value(part, value, field, errors);
        }
        let fits = match (schema["type"].as_str(), value) {
            (None, _) => true,
            (Some("object"), Value::Object(map)) => {
                self.check_object(schema, map, field, errors);
                true
            }
            (Some("array"), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&schema["items"], item, &format!("{field}[{i}]"), errors);
                }
                within(schema, "minItems", "maxItems", items.len() as f64)
            }
            (Some("string"), Value::String(text)) => string_fits(schema, text),
            (Some("integer"), Value::Number(n)) => integer_fits(schema, n),
            (Some("number"), Value::Number(n)) => {
                within(schema, "minimum", "maximum", n.as_f64().unwrap_or(f64::NAN))
            }
            (Some("boolean"), Value::Bool(_)) => true,
            _ => false,
        };
        if !fits {
            let expected = self.describe(schema);
            let field = if field.is_empty() { "body" } else { field };
            errors.push(field_error(
                field,
                format!("must be {expected}, not {}", shown(value)),
            ));
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        map: &Map<String, Value>,
        field: &str,
        errors: &mut Vec<FieldError>,
    ) {
        let empty = Map::new();
        let properties = schema["properties"].as_object().unwrap_or(&empty);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for name in &required {
            if map.get(*name).is_none_or(Value::is_null) {
                let expected = self.describe(properties.get(*name).unwrap_or(&Value::Null));
                errors.push(field_error(
                    join(field, name),
                    format!("is required: {expected}"),
                ));
            }
        }
        let closed = match schema.get("additionalProperties") {
            None => !properties.is_empty(),
            Some(extra) => *extra == false,
        };
        for (name, value) in map {
            let path = join(field, name);
            match properties.get(name) {
                // An absent optional value may be written as null; a required one was reported.
                Some(_) if value.is_null() => {}
                Some(property) => self.check_value(property, value, &path, errors),
                None if closed => {
                    let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                    let message =
                        format!("is not a field here; the fields are {}", known.join(", "));
                    errors.push(field_error(path, message));
                }
                None => {
                    if let Some(extra) =
                        schema.get("additionalProperties").filter(|e| e.is_object())
                    {
                        self.check_value(extra, value, &path, errors);
                    }
                }
            }
        }
    }

    /// What a schema accepts, in plain words: "an integer from 1 to 500", "one of a, b".
    pub(super) fn describe(&self, schema: &Value) -> String {
        let schema = self.resolve(schema);
        if schema.get("type").is_none()
            && let Some(part) = schema["allOf"].as_array().and_then(|parts| parts.first())
        {
            return self.describe(part);
        }
        if let Some(values) = schema["enum"].as_array() {
            let values: Vec<String> = values
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            return format!("one of {}", values.join(", "));
        }
        let (low, high) = match schema["type"].as_str() {
            Some("string") => ("minLength", "maxLength"),
            Some("array") => ("minItems", "maxItems"),
            _ => ("minimum", "maximum"),
        };
        let bound = |key: &str| schema[key].as_f64().map(|n| format!("{n}"));
        let span = match (bound(low), bound(high)) {
            (Some(low), Some(high)) => format!("{low} to {high}"),
            (Some(low), None) => format!("at least {low}"),
            (None, Some(high)) => format!("at most {high}"),
            (None, None) => String::new(),
        };
        let is_range = span.contains(" to ");
        match (schema["type"].as_str(), schema["format"].as_str()) {
            (Some("integer" | "number"), _) => {
                let noun = if schema["type"] == "integer" {
                    "an integer"
                } else {
                    "a number"
                };
                match (span.is_empty(), is_range) {
                    (true, _) => noun.to_owned(),
                    (false, true) => format!("{noun} from {span}"),
                    (false, false) => format!("{noun} of {span}"),
                }
            }
            (Some("boolean"), _) => "true or false".to_owned(),
            (Some("string"), Some("date-time")) => {
                "a date and time in RFC 3339 form, e.g. 2026-01-31T09:30:00Z".to_owned()
            }
            (Some("string"), Some("uuid")) => {
                "a UUID, e.g. 0193ab4c-5d6e-7f80-9a1b-2c3d4e5f6a7b".to_owned()
            }
            (Some("string"), _) if span.is_empty() => "a string".to_owned(),
            (Some("string"), _) => format!("a string of {span} characters"),
            (Some("array"), _) => {
                let items = self.describe(&schema["items"]);
                if span.is_empty() {
                    format!("a list, each item {items}")
                } else {
                    format!("a list of {span} items, each {items}")
                }
            }
            (Some("object"), _) => "a JSON object".to_owned(),
            _ => "a JSON value".to_owned(),
        }
    }

    /// The schema a `$ref` names (the schema itself when it is no reference).
    pub(super) fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let name = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"));
        match name.and_then(|name| self.0.get(name)) {
            Some(named) => self.resolve(named),
            None => schema,
        }
    }
}

fn join(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        format!("{field}.{name}")
    }
}

/// A value as the message shows it, cut short.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

fn string_fits(schema: &Value, text: &str) -> bool {
    let format_fits = match schema["format"].as_str() {
        Some("date-time") => text.parse::<DateTime<FixedOffset>>().is_ok(),
        Some("uuid") => text.parse::<uuid::Uuid>().is_ok(),
        _ => true,
    };
    let listed = schema["enum"]
        .as_array()
        .is_none_or(|values| values.iter().any(|v| v == text));
    format_fits
        && listed
        && within(
            schema,
            "minLength",
            "maxLength",
            text.chars().count() as f64,
        )
}

/// Whether a number is an integer of the schema's width (`format`) and within its bounds.
fn integer_fits(schema: &Value, n: &serde_json::Number) -> bool {
    let (low, high): (i128, i128) = match schema["format"].as_str() {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64") => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    let value = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from));
    value.is_some_and(|v| {
        (low..=high).contains(&v) && within(schema, "minimum", "maximum", v as f64)
    })
}

fn within(schema: &Value, low: &str, high: &str, value: f64) -> bool {
    schema[low].as_f64().is_none_or(|low| value >= low)
        && schema[high].as_f64().is_none_or(|high| value <= high)
}
