//! `gst::Structure` → JSON, for recording element statistics (`ristbond-stats`,
//! `rist/x-sender-stats`, `rist/x-receiver-stats`) in the benchmark results.

use gst::glib;
use gst::prelude::*;
use serde_json::{json, Map, Value};

/// One GValue as JSON: numbers, booleans, strings, nested structures and arrays/lists;
/// anything else as its serialised string.
pub fn value_to_json(v: &glib::Value) -> Value {
    macro_rules! try_as {
        ($($t:ty),*) => {$(
            if let Ok(x) = v.get::<$t>() {
                return json!(x);
            }
        )*};
    }
    try_as!(u64, i64, u32, i32, f64, f32, bool);
    if let Ok(s) = v.get::<Option<String>>() {
        return s.map_or(Value::Null, Value::String);
    }
    if let Ok(s) = v.get::<gst::Structure>() {
        return structure_to_json(&s);
    }
    if let Ok(a) = v.get::<gst::Array>() {
        return Value::Array(a.iter().map(|v| value_to_json(v)).collect());
    }
    if let Ok(a) = v.get::<gst::List>() {
        return Value::Array(a.iter().map(|v| value_to_json(v)).collect());
    }
    v.serialize()
        .map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// A structure as a JSON object (its name under `"name"`).
pub fn structure_to_json(s: &gst::StructureRef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(s.name().to_string()));
    for (k, v) in s.iter() {
        m.insert(k.to_string(), value_to_json(v));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_stats_convert() {
        gst::init().unwrap();
        let link = gst::Structure::builder("ristbond-link")
            .field("id", 2u32)
            .field("state", "Down")
            .field("rtt-ms", 41.5f64)
            .build();
        let s = gst::Structure::builder("ristbond-stats")
            .field("packets-sent", 10u64)
            .field("links", gst::Array::new([link.to_send_value()]))
            .build();
        let j = structure_to_json(&s);
        assert_eq!(j["name"], "ristbond-stats");
        assert_eq!(j["packets-sent"], 10);
        assert_eq!(j["links"][0]["state"], "Down");
        assert_eq!(j["links"][0]["id"], 2);
        assert_eq!(j["links"][0]["rtt-ms"], 41.5);
    }
}
