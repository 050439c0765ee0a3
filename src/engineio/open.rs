//! The open packet (engine.io-protocol, "Handshake"): the JSON object the
//! server sends first and the client takes its session parameters from.
//! Both sides use this one type, written and read with serde_json.

use std::time::Duration;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

/// The open packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenPacket {
    /// The session id.
    pub(super) sid: String,
    /// The transports the client may upgrade to.
    pub(super) upgrades: Vec<String>,
    /// `pingInterval`, in milliseconds on the wire.
    pub(super) ping_interval: Duration,
    /// `pingTimeout`, in milliseconds on the wire.
    pub(super) ping_timeout: Duration,
    /// `maxPayload`; the official server always sends it, older ones not.
    pub(super) max_payload: Option<usize>,
}

/// The keys in the official server's order:
/// `{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
impl Serialize for OpenPacket {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut o = serializer.serialize_struct("OpenPacket", 5)?;
        o.serialize_field("sid", &self.sid)?;
        o.serialize_field("upgrades", &self.upgrades)?;
        o.serialize_field("pingInterval", &self.ping_interval.as_millis())?;
        o.serialize_field("pingTimeout", &self.ping_timeout.as_millis())?;
        match self.max_payload {
            Some(n) => o.serialize_field("maxPayload", &n)?,
            None => o.skip_field("maxPayload")?,
        }
        o.end()
    }
}

impl OpenPacket {
    /// The packet's JSON text.
    pub(super) fn to_json(&self) -> String {
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the JSON of an open packet. Unknown keys are ignored, as are
    /// non-string upgrades and a `maxPayload` that is not a positive number;
    /// a missing sid or heartbeat is an error, said for people.
    pub(super) fn parse(json: &str) -> Result<OpenPacket, &'static str> {
        let value: Value = serde_json::from_str(json).map_err(|_| "the open packet is not JSON")?;
        let Value::Object(fields) = value else {
            return Err("the open packet is not a JSON object");
        };
        let sid = match fields.get("sid") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err("missing sid"),
        };
        let upgrades = match fields.get("upgrades") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => return Err("upgrades is not an array"),
        };
        let number = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_f64)
                .filter(|n| n.is_finite())
        };
        let millis = |k: &str| {
            number(k)
                .filter(|n| *n >= 0.0)
                .map(|n| Duration::from_millis(n.min(f64::from(u32::MAX)) as u64))
        };
        Ok(OpenPacket {
            sid,
            upgrades,
            ping_interval: millis("pingInterval").ok_or("missing pingInterval")?,
            ping_timeout: millis("pingTimeout").ok_or("missing pingTimeout")?,
            max_payload: number("maxPayload")
                .filter(|n| *n > 0.0)
                .map(|n| n.min(usize::MAX as f64) as usize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_the_official_key_order() {
        let open = OpenPacket {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: Some(1_000_000),
        };
        assert_eq!(
            open.to_json(),
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert_eq!(OpenPacket::parse(&open.to_json()), Ok(open.clone()));
        let bare = OpenPacket {
            upgrades: Vec::new(),
            max_payload: None,
            ..open
        };
        assert_eq!(
            bare.to_json(),
            r#"{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#
        );
    }

    #[test]
    fn read_leniently_but_never_without_sid_or_heartbeat() {
        let h = OpenPacket::parse(
            r#" {"sid":"a\"b\u00e9\ud83d\ude00","upgrades":["websocket","x",1],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1e6,"extra":{"n":[null,true,false,-1.5]}} "#,
        )
        .unwrap();
        assert_eq!(h.sid, "a\"bé😀");
        assert_eq!(h.upgrades, ["websocket", "x"]);
        assert_eq!(h.ping_interval, Duration::from_secs(25));
        assert_eq!(h.ping_timeout, Duration::from_secs(20));
        assert_eq!(h.max_payload, Some(1_000_000));
        let no_max = OpenPacket::parse(r#"{"sid":"s","pingInterval":1,"pingTimeout":2}"#).unwrap();
        assert_eq!((no_max.max_payload, no_max.upgrades.len()), (None, 0));
        for bad in [
            "",
            "{",
            r#"{"sid":"s","pingInterval":1}"#,
            r#"{"sid":"","pingInterval":1,"pingTimeout":2}"#,
            r#"{"sid":"s","pingInterval":-1,"pingTimeout":2}"#,
            r#"{"sid":"s","pingInterval":1,"pingTimeout":2,"upgrades":"websocket"}"#,
            r#"{"sid":"s","pingInterval":1,"pingTimeout":2} x"#,
            "[1,2]",
        ] {
            assert!(OpenPacket::parse(bad).is_err(), "{bad:?}");
        }
        // Nesting deeper than serde_json's limit is an error, not a crash.
        assert!(OpenPacket::parse(&"[".repeat(100_000)).is_err());
    }
}
