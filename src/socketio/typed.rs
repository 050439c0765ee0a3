//! Typed arguments through serde: any `Serialize` type becomes a [`Value`]
//! and any `Deserialize` type is read back from one. Bytes (`bytes::Bytes`,
//! `serde_bytes`, anything that calls `serialize_bytes`) become
//! [`Value::Binary`], so they travel as attachments, never as base64 or
//! arrays of numbers.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use wsio::socketio::{from_value, to_value, Value};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Upload { name: String, data: bytes::Bytes }
//!
//! let up = Upload { name: "a.bin".into(), data: bytes::Bytes::from_static(b"\x00\x01") };
//! let v = to_value(&up).unwrap();
//! assert_eq!(v["data"], Value::Binary(up.data.clone()));
//! assert_eq!(from_value::<Upload>(v).unwrap(), up);
//! ```

use std::fmt;

use bytes::Bytes;
use serde::{
    de::{self, DeserializeOwned, IntoDeserializer, Visitor},
    ser::{self, Serialize},
};

use super::value::{Number, Value, merge_repeated_keys};

/// A value that does not fit the requested type, or a type serde cannot
/// express as JSON (a map with non-string keys...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypedError(String);

impl ser::Error for TypedError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TypedError(msg.to_string())
    }
}

impl de::Error for TypedError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TypedError(msg.to_string())
    }
}

/// Converts any serialisable value into a [`Value`].
pub fn to_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, TypedError> {
    v.serialize(ValueSerializer)
}

/// Reads a typed value out of a [`Value`].
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, TypedError> {
    T::deserialize(v)
}

impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(Number::U64(n)) => s.serialize_u64(*n),
            Value::Number(Number::I64(n)) => s.serialize_i64(*n),
            Value::Number(Number::F64(f)) => s.serialize_f64(*f),
            Value::String(t) => s.serialize_str(t),
            Value::Binary(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for e in a {
                    seq.serialize_element(e)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct ValueSerializer;

/// Collects elements of sequences, tuples and tuple variants.
struct SeqBuilder {
    items: Vec<Value>,
    variant: Option<&'static str>,
}

/// Collects members of maps, structs and struct variants.
struct MapBuilder {
    members: Vec<(String, Value)>,
    key: Option<String>,
    variant: Option<&'static str>,
}

fn wrap(variant: Option<&'static str>, v: Value) -> Value {
    match variant {
        Some(name) => Value::Object(vec![(name.to_owned(), v)]),
        None => v,
    }
}

/// Integers become numbers as `Value::from` makes them.
macro_rules! serialize_integers {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<Value, TypedError> {
            Ok(v.into())
        }
    )*};
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = TypedError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Value, TypedError> {
        Ok(Value::Bool(v))
    }
    serialize_integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64
    );
    fn serialize_f32(self, v: f32) -> Result<Value, TypedError> {
        Ok(Value::Number(Number::F64(f64::from(v))))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, TypedError> {
        Ok(Value::Number(Number::F64(v)))
    }
    fn serialize_char(self, v: char) -> Result<Value, TypedError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, TypedError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, TypedError> {
        Ok(Value::Binary(Bytes::copy_from_slice(v)))
    }
    fn serialize_none(self) -> Result<Value, TypedError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, TypedError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, TypedError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, TypedError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, TypedError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, TypedError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, TypedError> {
        Ok(wrap(Some(variant), v.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, TypedError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0).min(1024)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, TypedError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqBuilder, TypedError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, TypedError> {
        let mut b = self.serialize_seq(Some(len))?;
        b.variant = Some(variant);
        Ok(b)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, TypedError> {
        Ok(MapBuilder {
            members: Vec::with_capacity(len.unwrap_or(0).min(1024)),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapBuilder, TypedError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, TypedError> {
        let mut b = self.serialize_map(Some(len))?;
        b.variant = Some(variant);
        Ok(b)
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = TypedError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), TypedError> {
        self.items.push(to_value(v)?);
        Ok(())
    }
    fn end(self) -> Result<Value, TypedError> {
        Ok(wrap(self.variant, Value::Array(self.items)))
    }
}

/// Tuples, tuple structs and tuple variants are sequences (a variant's is
/// wrapped by `end`).
macro_rules! serialize_as_seq {
    ($($kind:ident::$add:ident),*) => {$(
        impl ser::$kind for SeqBuilder {
            type Ok = Value;
            type Error = TypedError;
            fn $add<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), TypedError> {
                ser::SerializeSeq::serialize_element(self, v)
            }
            fn end(self) -> Result<Value, TypedError> {
                ser::SerializeSeq::end(self)
            }
        }
    )*};
}

serialize_as_seq!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = TypedError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), TypedError> {
        self.key = Some(match to_value(key)? {
            Value::String(s) => s,
            Value::Number(n) => Value::Number(n).to_json(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(TypedError(
                    "map keys must be strings, numbers or booleans".into(),
                ));
            }
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), TypedError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| TypedError("map value without a key".into()))?;
        let v = to_value(v)?;
        self.members.push((key, v));
        Ok(())
    }
    fn end(self) -> Result<Value, TypedError> {
        // Keys that became equal as text (`1` and `"1"`) merge as
        // repeated JSON keys do.
        let members = merge_repeated_keys(self.members);
        Ok(wrap(self.variant, Value::Object(members)))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = TypedError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), TypedError> {
        let v = to_value(v)?;
        self.members.push((key.to_owned(), v));
        Ok(())
    }
    fn end(self) -> Result<Value, TypedError> {
        ser::SerializeMap::end(self)
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Value;
    type Error = TypedError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), TypedError> {
        ser::SerializeStruct::serialize_field(self, key, v)
    }
    fn end(self) -> Result<Value, TypedError> {
        ser::SerializeMap::end(self)
    }
}

// ----- deserialisation --------------------------------------------------

impl<'de> de::Deserializer<'de> for Value {
    type Error = TypedError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypedError> {
        match self {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(b),
            Value::Number(Number::U64(n)) => v.visit_u64(n),
            Value::Number(Number::I64(n)) => v.visit_i64(n),
            Value::Number(Number::F64(f)) => v.visit_f64(f),
            Value::String(s) => v.visit_string(s),
            Value::Binary(b) => v.visit_byte_buf(b.to_vec()),
            Value::Array(a) => v.visit_seq(
                a.into_iter()
                    .map(ValueDe)
                    .collect::<Vec<_>>()
                    .into_deserializer(),
            ),
            Value::Object(o) => v.visit_map(de::value::MapDeserializer::new(
                o.into_iter().map(|(k, val)| (k, ValueDe(val))),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypedError> {
        match self {
            Value::Null => v.visit_none(),
            other => v.visit_some(other),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypedError> {
        match self {
            Value::Binary(b) => v.visit_byte_buf(b.to_vec()),
            other => other.deserialize_any(v),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypedError> {
        self.deserialize_bytes(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, TypedError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TypedError> {
        match self {
            Value::String(s) => v.visit_enum(s.into_deserializer()),
            Value::Object(mut o) if o.len() == 1 => {
                let (variant, value) = o.remove(0);
                v.visit_enum(EnumDe { variant, value })
            }
            _ => Err(de::Error::custom(
                "expected an enum: a string or an object with one key",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A `Value` usable where serde wants `IntoDeserializer`.
struct ValueDe(Value);

impl<'de> IntoDeserializer<'de, TypedError> for ValueDe {
    type Deserializer = Value;
    fn into_deserializer(self) -> Value {
        self.0
    }
}

struct EnumDe {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for EnumDe {
    type Error = TypedError;
    type Variant = Value;
    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Value), TypedError> {
        let v = seed.deserialize(self.variant.into_deserializer())?;
        Ok((v, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for Value {
    type Error = TypedError;
    fn unit_variant(self) -> Result<(), TypedError> {
        Ok(())
    }
    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, TypedError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, TypedError> {
        de::Deserializer::deserialize_any(self, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TypedError> {
        de::Deserializer::deserialize_any(self, v)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Sized(u32),
        Pair(i8, String),
        Named { x: f64 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        id: u64,
        text: String,
        attachment: Option<Bytes>,
        tags: Vec<String>,
        kinds: Vec<Kind>,
        extra: BTreeMap<String, i64>,
    }

    #[test]
    fn typed_round_trip_with_binary() {
        let m = Msg {
            id: 7,
            text: "é".into(),
            attachment: Some(Bytes::from_static(b"\x00\xff")),
            tags: vec!["a".into()],
            kinds: vec![
                Kind::Plain,
                Kind::Sized(3),
                Kind::Pair(-1, "p".into()),
                Kind::Named { x: 1.5 },
            ],
            extra: BTreeMap::from([("k".into(), -5)]),
        };
        let v = to_value(&m).unwrap();
        assert_eq!(
            v["attachment"],
            Value::Binary(Bytes::from_static(b"\x00\xff"))
        );
        assert_eq!(
            v.to_json(),
            r#"{"id":7,"text":"é","attachment":null,"tags":["a"],"kinds":["Plain",{"Sized":3},{"Pair":[-1,"p"]},{"Named":{"x":1.5}}],"extra":{"k":-5}}"#
        );
        assert_eq!(from_value::<Msg>(v).unwrap(), m);
    }

    #[test]
    fn values_from_the_wire_deserialise() {
        let v = Value::from_json(
            r#"{"id":1,"text":"t","attachment":null,"tags":[],"kinds":[],"extra":{}}"#,
        )
        .unwrap();
        let m: Msg = from_value(v).unwrap();
        assert_eq!((m.id, m.attachment), (1, None));
        assert!(from_value::<Msg>(Value::from("nope")).is_err());
        assert_eq!(
            from_value::<(u8, String)>(Value::from_json(r#"[1,"x"]"#).unwrap()).unwrap(),
            (1, "x".into())
        );
    }

    #[test]
    fn map_keys_equal_as_text_merge_like_repeated_json_keys() {
        struct Repeats;
        impl Serialize for Repeats {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry(&1, "a")?;
                m.serialize_entry("b", "x")?;
                m.serialize_entry("1", "c")?;
                m.end()
            }
        }
        assert_eq!(
            to_value(&Repeats).unwrap(),
            Value::object([("1", Value::from("c")), ("b", Value::from("x"))])
        );
        // Many keys: merged once at the end, not searched key by key.
        let big: BTreeMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        let Value::Object(o) = to_value(&big).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 100_000);
    }
}
