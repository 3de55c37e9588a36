//! The reason a value refused to serialize: postcard keeps only "custom error", so on that
//! (rare) path the value is serialized once more into a sink that keeps the message.

use std::fmt::Display;

use serde::Serialize;
use serde::ser;

/// Why `value` fails to serialize, in its own words, if it does.
///
/// ```
/// struct Picky;
/// impl serde::Serialize for Picky {
///     fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
///         Err(serde::ser::Error::custom("picky refuses"))
///     }
/// }
/// assert_eq!(polyloop_wire::serialize_failure(&Picky).as_deref(), Some("picky refuses"));
/// assert_eq!(polyloop_wire::serialize_failure(&42u8), None);
/// ```
pub fn serialize_failure<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value.serialize(Sink).err().map(|Reason(reason)| reason)
}

#[derive(Debug)]
struct Reason(String);

impl Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reason {}

impl ser::Error for Reason {
    fn custom<M: Display>(msg: M) -> Self {
        Reason(msg.to_string())
    }
}

/// A serializer that writes nothing and accepts every shape, so that only the value's own
/// errors come out.
struct Sink;

macro_rules! accept {
    ($($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<(), Reason> { Ok(()) })*
    };
}

impl ser::Serializer for Sink {
    type Ok = ();
    type Error = Reason;
    type SerializeSeq = Sink;
    type SerializeTuple = Sink;
    type SerializeTupleStruct = Sink;
    type SerializeTupleVariant = Sink;
    type SerializeMap = Sink;
    type SerializeStruct = Sink;
    type SerializeStructVariant = Sink;

    accept! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_i128(i128); serialize_u8(u8); serialize_u16(u16);
        serialize_u32(u32); serialize_u64(u64); serialize_u128(u128); serialize_f32(f32);
        serialize_f64(f64); serialize_char(char); serialize_str(&str); serialize_bytes(&[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Reason> {
        value.serialize(Sink)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Reason> {
        value.serialize(Sink)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Reason> {
        value.serialize(Sink)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Sink, Reason> {
        Ok(Sink)
    }
    fn serialize_tuple(self, _: usize) -> Result<Sink, Reason> {
        Ok(Sink)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Sink, Reason> {
        Ok(Sink)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Sink, Reason> {
        Ok(Sink)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Sink, Reason> {
        Ok(Sink)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Sink, Reason> {
        Ok(Sink)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Sink, Reason> {
        Ok(Sink)
    }
}

macro_rules! compound {
    ($($trait:ident :: $method:ident;)*) => {$(
        impl ser::$trait for Sink {
            type Ok = ();
            type Error = Reason;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Reason> {
                value.serialize(Sink)
            }
            fn end(self) -> Result<(), Reason> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

impl ser::SerializeMap for Sink {
    type Ok = ();
    type Error = Reason;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Reason> {
        key.serialize(Sink)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Reason> {
        value.serialize(Sink)
    }
    fn end(self) -> Result<(), Reason> {
        Ok(())
    }
}

macro_rules! named_fields {
    ($($trait:ident;)*) => {$(
        impl ser::$trait for Sink {
            type Ok = ();
            type Error = Reason;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), Reason> {
                value.serialize(Sink)
            }
            fn end(self) -> Result<(), Reason> {
                Ok(())
            }
        }
    )*};
}

named_fields! {
    SerializeStruct;
    SerializeStructVariant;
}
