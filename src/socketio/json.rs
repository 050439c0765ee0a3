//! JSON text to [`Value`] in one pass.
//!
//! Every event a server receives is parsed here, so the common shapes take
//! a short path: plain strings are found eight bytes at a time and copied
//! once, integers are read digit by digit. Whatever is rare and subtle
//! (escapes, fractions, exponents, huge integers) is handed to `serde_json`
//! on just that token, so the result is exactly what
//! `serde_json::from_str::<Value>` gives for the whole text; a test and the
//! `sio_packet` fuzz target hold the two to that.

use serde::de::Error as _;

use super::value::{Number, Value, first_escape, merge_repeated_keys};

/// serde_json's nesting limit (its counter starts at 128 and refuses the
/// level that brings it to zero), so both paths accept the same texts and
/// deep input cannot exhaust the stack.
const MAX_DEPTH: usize = 127;

/// Up to this many keys an object merges repeated keys as they come; a
/// larger one merges once at the end by sorting, so a hostile object with
/// many keys costs O(n log n), not O(n²).
const LINEAR_KEYS: usize = 16;

/// Parses one JSON document (surrounding whitespace allowed).
pub(crate) fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut p = Parser { text, i: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.i == text.len() {
        Ok(v)
    } else {
        Err(error("trailing characters"))
    }
}

fn error(msg: &str) -> serde_json::Error {
    serde_json::Error::custom(msg)
}

struct Parser<'a> {
    text: &'a str,
    /// Always on a character boundary: it only stops on ASCII bytes or at
    /// the end.
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, serde_json::Error> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(error("expected value")),
            None => Err(error("EOF while parsing a value")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, serde_json::Error> {
        if self.text.as_bytes()[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(error("expected value"))
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, serde_json::Error> {
        if depth > MAX_DEPTH {
            return Err(error("recursion limit exceeded"));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        // Room for an event's name and a few arguments in one allocation,
        // made directly rather than by the first push's regrowth.
        items.reserve_exact(4);
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, serde_json::Error> {
        if depth > MAX_DEPTH {
            return Err(error("recursion limit exceeded"));
        }
        self.i += 1;
        let mut entries: Vec<(String, Value)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(entries));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(error("key must be a string"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(error("expected `:`"));
            }
            self.i += 1;
            let v = self.value(depth)?;
            // JavaScript keeps a repeated key at its first position with
            // the last value.
            match entries
                .iter_mut()
                .take(LINEAR_KEYS)
                .find(|(k, _)| *k == key)
            {
                Some(slot) => slot.1 = v,
                None => entries.push((key, v)),
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(error("expected `,` or `}`")),
            }
        }
        if entries.len() > LINEAR_KEYS {
            entries = merge_repeated_keys(entries);
        }
        Ok(Value::Object(entries))
    }

    /// A string token, `self.i` on its opening quote.
    fn string(&mut self) -> Result<String, serde_json::Error> {
        let start = self.i + 1;
        let j = first_escape(self.text.as_bytes(), start);
        match self.text.as_bytes().get(j) {
            Some(b'"') => {
                self.i = j + 1;
                Ok(self.text[start..j].to_owned())
            }
            Some(b'\\') => self.escaped_string(j),
            Some(_) => Err(error("control character in string")),
            None => Err(error("EOF while parsing a string")),
        }
    }

    /// The rest of a string holding an escape at `j`: serde_json decodes
    /// the whole token (surrogate pairs, refusal of lone surrogates).
    fn escaped_string(&mut self, mut j: usize) -> Result<String, serde_json::Error> {
        let bytes = self.text.as_bytes();
        while let Some(&c) = bytes.get(j) {
            match c {
                // Skipping one byte after a backslash may land inside a
                // multi-byte character; only ASCII bytes are acted on, so
                // that is harmless (and the escape is invalid anyway).
                b'\\' => j += 2,
                b'"' => {
                    let token = &self.text[self.i..=j];
                    self.i = j + 1;
                    return serde_json::from_str(token);
                }
                _ => j += 1,
            }
        }
        Err(error("EOF while parsing a string"))
    }

    fn number(&mut self) -> Result<Value, serde_json::Error> {
        let bytes = self.text.as_bytes();
        let start = self.i;
        let negative = bytes[start] == b'-';
        let digits = start + usize::from(negative);
        let mut j = digits;
        let mut n: u64 = 0;
        let mut overflow = false;
        while let Some(&d @ b'0'..=b'9') = bytes.get(j) {
            match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
            {
                Some(m) => n = m,
                None => overflow = true,
            }
            j += 1;
        }
        let leading_zero = j - digits > 1 && bytes[digits] == b'0';
        let plain = j > digits
            && !overflow
            && !leading_zero
            && !matches!(bytes.get(j), Some(b'.' | b'e' | b'E'));
        if plain && !negative {
            self.i = j;
            return Ok(Value::Number(Number::U64(n)));
        }
        // serde_json turns `-0` and integers below i64::MIN into floats.
        if plain && (1..=1 << 63).contains(&n) {
            self.i = j;
            return Ok(Value::Number(Number::I64((n as i64).wrapping_neg())));
        }
        // Fractions, exponents, huge integers and malformed numbers: the
        // token ends at the first byte no number can hold (valid JSON has
        // `,`, `]`, `}` or whitespace there).
        while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = bytes.get(j) {
            j += 1;
        }
        let token = &self.text[start..j];
        self.i = j;
        serde_json::from_str(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the parser must agree with: serde_json driving `Value`'s
    /// `Deserialize`, compared through `Debug` so that `1` and `1.0`, or
    /// `0` and `-0`, count as different.
    fn check(text: &str) {
        let fast = parse(text).map(|v| format!("{v:?}"));
        let reference = serde_json::from_str::<Value>(text).map(|v| format!("{v:?}"));
        assert_eq!(fast.ok(), reference.ok(), "{text:?}");
    }

    #[test]
    fn agrees_with_serde_json_on_hand_picked_texts() {
        for text in [
            "",
            " ",
            "null",
            "true",
            "false",
            "tru",
            "nul",
            "truex",
            "0",
            "-0",
            "00",
            "01",
            "-01",
            "1",
            "-1",
            "1.",
            "1.0",
            ".5",
            "1e3",
            "1E+3",
            "1e-3",
            "-",
            "--1",
            "+1",
            "1.5e",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "-18446744073709551615",
            "123456789012345678901234567890",
            "0.1",
            "1e400",
            "-1e400",
            "5e-324",
            "2.2250738585072014e-308",
            r#""""#,
            r#""abc""#,
            r#""é€😀""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ude00x""#,
            r#""\x""#,
            r#""\"#,
            "\"a\u{1}b\"",
            "\"a\tb\"",
            "\"unterminated",
            r#""long string with no escapes at all, more than eight bytes""#,
            r#""long string with an escape \n after some bytes""#,
            "[]",
            "[ ]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[1,2",
            "[[[]]]",
            "{}",
            "{ }",
            r#"{"a":1}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"2":1,"1":2}"#,
            " [ 1 , \"x\" , { \"k\" : [ true , null ] } ] ",
            "[1]x",
            "[1] ",
            "\u{feff}[]",
            r#"["message","12:abcdefghij"]"#,
            "[1-2]",
            "[1.2.3]",
            "[1e5e5]",
            "[-]",
            "[0x10]",
            "[Infinity]",
            "[NaN]",
            "[1,\n2]",
        ] {
            check(text);
        }
    }

    #[test]
    fn nesting_limit_matches_serde_json() {
        for n in [126, 127, 128, 129, 10_000] {
            check(&format!("{}{}", "[".repeat(n), "]".repeat(n)));
            check(&format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)));
        }
        assert!(parse(&format!("{}{}", "[".repeat(127), "]".repeat(127))).is_ok());
        assert!(parse(&format!("{}{}", "[".repeat(128), "]".repeat(128))).is_err());
    }

    #[test]
    fn agrees_with_serde_json_on_generated_texts() {
        // A deterministic generator of near-JSON: valid documents with
        // random edits, so both the happy paths and the refusals are
        // compared.
        let atoms: &[&str] = &[
            "0",
            "-0",
            "7",
            "-7",
            "1.5",
            "1e2",
            "99999999999999999999",
            "-9223372036854775808",
            "true",
            "false",
            "null",
            r#""s""#,
            r#""é""#,
            r#""a\nb""#,
            r#""\u0041""#,
            "\"\"",
            r#""0123456789abcdef""#,
            "[]",
            "{}",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        for _ in 0..20_000 {
            let mut s = String::new();
            gen_value(&mut s, &mut next, atoms, 0);
            check(&s);
            // One random edit.
            let mut b = s.into_bytes();
            if !b.is_empty() {
                let at = next(b.len());
                let junk = b"[]{},:\" \\-.e0a";
                match next(3) {
                    0 => {
                        b.remove(at);
                    }
                    1 => b.insert(at, junk[next(junk.len())]),
                    _ => b[at] = junk[next(junk.len())],
                }
            }
            if let Ok(s) = String::from_utf8(b) {
                check(&s);
            }
        }
    }

    fn gen_value(
        out: &mut String,
        next: &mut impl FnMut(usize) -> usize,
        atoms: &[&str],
        d: usize,
    ) {
        match if d > 3 { 0 } else { next(4) } {
            0 | 1 => out.push_str(atoms[next(atoms.len())]),
            2 => {
                out.push('[');
                for i in 0..next(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    gen_value(out, next, atoms, d + 1);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..next(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    let keys = ["\"a\"", "\"b\"", "\"1\"", "\"a\\u0062\""];
                    out.push_str(keys[next(keys.len())]);
                    out.push(':');
                    gen_value(out, next, atoms, d + 1);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn repeated_keys_in_large_objects_merge_like_small_ones() {
        // 40 keys, every one repeated: first position, last value.
        let mut text = String::from("{");
        for round in 0..3 {
            for k in 0..40 {
                if text.len() > 1 {
                    text.push(',');
                }
                text.push_str(&format!("\"k{}\":{}", (k * 7) % 40, round * 100 + k));
            }
        }
        text.push('}');
        let Value::Object(o) = parse(&text).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 40);
        for (i, (k, v)) in o.iter().enumerate() {
            assert_eq!(k, &format!("k{}", (i * 7) % 40));
            assert_eq!(v, &Value::from(200 + i as u64));
        }
        check(&text);
    }

    #[test]
    fn many_distinct_keys_parse() {
        // 100,000 keys: merging them pairwise would take 5e9 comparisons.
        let mut text = String::from("{");
        for k in 0..100_000 {
            if k > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"{k}\":0"));
        }
        text.push('}');
        let Value::Object(o) = parse(&text).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 100_000);
        assert_eq!(o[99_999].0, "99999");
    }
}
