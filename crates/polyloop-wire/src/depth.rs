//! Decoding postcard values with a nesting limit, so a deeply nested value is an error, not a
//! stack overflow.
//!
//! serde decodes by recursion, one set of stack frames per level of the value, and an overflow
//! aborts the whole process (`catch_unwind` cannot catch it). [`decode_value`] wraps postcard's
//! deserializer, and every visitor, seed and access it hands out, in [`Limited`], which counts
//! the levels down and refuses to go below zero.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// The nesting limit to use when the caller has no reason to pick another.
///
/// One level is one value that holds others, counted as [`decode_value`] describes: a sequence,
/// tuple, struct, map, enum value, `Some` or newtype struct.
///
/// Why 128: a level costs the decoder a few stack frames, about 1.3 KiB for a small type in a
/// debug build (a 2 MiB thread stack overflows after some 1,600 levels of a `Box`-linked list),
/// so 128 levels use under a tenth of that stack and leave room for `Deserialize` frames ten
/// times larger. Real data seldom nests more than a dozen levels.
pub const DEFAULT_MAX_NESTING: u32 = 128;

/// A value that could not be decoded by [`decode_value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value nests deeper than the limit; decoding stopped there.
    #[error("value nests deeper than the limit of {limit} levels")]
    TooDeep {
        /// The limit in force.
        limit: u32,
    },
    /// The value decoded but left bytes unread.
    #[error("{bytes} trailing bytes (the two sides disagree on its type)")]
    Trailing {
        /// How many bytes were left.
        bytes: usize,
    },
    /// The bytes are not a valid postcard encoding of the type.
    #[error(transparent)]
    Invalid(postcard::Error),
}

/// Decodes a postcard value of type `T` that must use every byte of `bytes`, refusing values
/// that nest deeper than `max_nesting` levels.
///
/// One level is one value that holds others: a sequence (`Vec`, sets, arrays), a tuple, a
/// struct, a map, an enum value (of any variant), `Some` or a newtype struct, even when empty.
/// Scalars, strings, byte strings, `()`, unit structs and `None` are not a level, nor is a
/// `Box`. The depth of a value is the most levels on any path from it down to a leaf, counting
/// itself: `7u32` and `None::<u32>` have depth 0, `vec![7u32]` and `Some(7u32)` depth 1,
/// `vec![Some(7u32)]` depth 2. A tuple or struct variant is two levels, the enum value and its
/// fields. A limit of `n` accepts depth `n` and refuses depth `n + 1` with
/// [`DecodeError::TooDeep`], before decoding further, so a peer cannot overflow the stack. The
/// limit also bounds the recursion of dropping the decoded value.
///
/// ```
/// use polyloop_wire::{DEFAULT_MAX_NESTING, DecodeError, decode_value};
///
/// let bytes = postcard::to_allocvec(&vec![vec![1u8, 2], vec![3]]).unwrap();
/// let value: Vec<Vec<u8>> = decode_value(&bytes, DEFAULT_MAX_NESTING).unwrap();
/// assert_eq!(value, [vec![1, 2], vec![3]]);
/// let err = decode_value::<Vec<Vec<u8>>>(&bytes, 1).unwrap_err();
/// assert!(matches!(err, DecodeError::TooDeep { limit: 1 }));
/// ```
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8], max_nesting: u32) -> Result<T, DecodeError> {
    let limit = Limit { max: max_nesting, hit: Cell::new(false) };
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let limited = Limited { inner: &mut de, remaining: max_nesting, limit: &limit };
    let value = match T::deserialize(limited) {
        Ok(value) => value,
        // postcard keeps no text of custom errors, so the flag tells ours apart. A value that
        // swallowed our error and then failed otherwise still reports `TooDeep`.
        Err(_) if limit.hit.get() => return Err(DecodeError::TooDeep { limit: max_nesting }),
        Err(err) => return Err(DecodeError::Invalid(err)),
    };
    let rest = de.finalize().map_err(DecodeError::Invalid)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing { bytes: rest.len() });
    }
    Ok(value)
}

/// What all the wrappers of one [`decode_value`] call share.
struct Limit {
    max: u32,
    /// Set when a wrapper refused to go deeper.
    hit: Cell<bool>,
}

/// A serde deserializer, visitor, seed or access whose every hand-off to nested data is wrapped
/// too, with `remaining` levels left.
///
/// Data can only nest through a visitor's `visit_seq`, `visit_map`, `visit_enum`, `visit_some`
/// or `visit_newtype_struct`, and those are the places that take a level, so no recursion can
/// happen without the count going down, whatever the inner deserializer calls.
struct Limited<'a, T> {
    inner: T,
    remaining: u32,
    limit: &'a Limit,
}

impl<'a, T> Limited<'a, T> {
    /// Wraps another piece of the same level.
    fn same<U>(&self, inner: U) -> Limited<'a, U> {
        Limited { inner, remaining: self.remaining, limit: self.limit }
    }

    /// Calls `f` with the inner value and `nested` wrapped one level down, or fails at the limit.
    fn descend<U, R, E: de::Error>(
        self,
        nested: U,
        f: impl FnOnce(T, Limited<'a, U>) -> Result<R, E>,
    ) -> Result<R, E> {
        let Some(remaining) = self.remaining.checked_sub(1) else {
            self.limit.hit.set(true);
            return Err(E::custom(DecodeError::TooDeep { limit: self.limit.max }));
        };
        f(self.inner, Limited { inner: nested, remaining, limit: self.limit })
    }
}

/// Forwards `deserialize_*` methods to the inner deserializer with the visitor wrapped.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self $(, $arg: $ty)*, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.same(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods that carry no nested data to the inner visitor.
macro_rules! forward_visit {
    ($($method:ident($($arg:ident: $ty:ty)?);)*) => {$(
        fn $method<E: de::Error>(self $(, $arg: $ty)?) -> Result<V::Value, E> {
            self.inner.$method($($arg)?)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Limited<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(v: bool);
        visit_i8(v: i8);
        visit_i16(v: i16);
        visit_i32(v: i32);
        visit_i64(v: i64);
        visit_i128(v: i128);
        visit_u8(v: u8);
        visit_u16(v: u16);
        visit_u32(v: u32);
        visit_u64(v: u64);
        visit_u128(v: u128);
        visit_f32(v: f32);
        visit_f64(v: f64);
        visit_char(v: char);
        visit_str(v: &str);
        visit_borrowed_str(v: &'de str);
        visit_string(v: String);
        visit_bytes(v: &[u8]);
        visit_borrowed_bytes(v: &'de [u8]);
        visit_byte_buf(v: Vec<u8>);
        visit_none();
        visit_unit();
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.descend(de, V::visit_some)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.descend(de, V::visit_newtype_struct)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.descend(seq, V::visit_seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.descend(map, V::visit_map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.descend(data, V::visit_enum)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Limited<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let de = self.same(de);
        self.inner.deserialize(de)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.same(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.same(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.same(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Limited<'a, A> {
    type Error = A::Error;
    type Variant = Limited<'a, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let seed = self.same(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((value, Limited { inner: variant, remaining: self.remaining, limit: self.limit }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.same(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.same(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.same(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt::Debug;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// A linked list: each node is one level (an enum value), so `n` nodes have depth `n`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Node {
        End,
        Next(Box<Node>),
    }

    /// Each tree is two levels: the newtype struct and its `Vec`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tree(Vec<Tree>);

    /// The encoding of `n` nested values of a type whose every level but the innermost is the
    /// varint `1` (variant `Next`, or a `Vec` of one) and whose innermost is `0`.
    fn chain(n: usize) -> Vec<u8> {
        let mut bytes = vec![1; n - 1];
        bytes.push(0);
        bytes
    }

    fn list(n: usize) -> Node {
        (1..n).fold(Node::End, |node, _| Node::Next(Box::new(node)))
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meters(f64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Line(Meters),
        Rect(u32, u32),
        Named { name: String, sides: Vec<u16> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        flag: bool,
        small: i8,
        big: i128,
        unsigned: u64,
        ratio: f32,
        letter: char,
        text: String,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        maybe: Option<Box<Everything>>,
        nothing: Option<u8>,
        shapes: Vec<Shape>,
        table: HashMap<String, Vec<(u8, Unit)>>,
        pair: (i64, String),
        array: [u16; 3],
        unit: (),
    }

    fn everything() -> Everything {
        let shapes = vec![
            Shape::Empty,
            Shape::Line(Meters(2.5)),
            Shape::Rect(3, 4),
            Shape::Named { name: "hex".into(), sides: vec![1, 2, 3, 4, 5, 6] },
        ];
        let inner = Everything {
            flag: false,
            small: 0,
            big: 0,
            unsigned: 0,
            ratio: 0.0,
            letter: 'a',
            text: String::new(),
            blob: Vec::new(),
            maybe: None,
            nothing: None,
            shapes: Vec::new(),
            table: HashMap::new(),
            pair: (0, String::new()),
            array: [0; 3],
            unit: (),
        };
        Everything {
            flag: true,
            small: -7,
            big: i128::MIN,
            unsigned: u64::MAX,
            ratio: 0.25,
            letter: 'ß',
            text: "hello, wire".into(),
            blob: vec![0, 255, 7],
            maybe: Some(Box::new(inner)),
            nothing: None,
            shapes,
            table: HashMap::from([("a".into(), vec![(1, Unit)]), ("b".into(), Vec::new())]),
            pair: (-1, "two".into()),
            array: [1, 2, 3],
            unit: (),
        }
    }

    /// Decodes `value`'s encoding with [`decode_value`] and checks it matches postcard's own.
    fn round_trip<T>(value: &T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let bytes = postcard::to_allocvec(value).unwrap();
        let ours: T = decode_value(&bytes, DEFAULT_MAX_NESTING).unwrap();
        assert_eq!(&ours, value);
        assert_eq!(ours, postcard::from_bytes::<T>(&bytes).unwrap());
    }

    /// Runs `f` on a thread with the default 2 MiB stack, as tasks get.
    fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let thread = std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap();
        thread.join().unwrap()
    }

    #[test]
    fn ordinary_values_round_trip() {
        round_trip(&everything());
        round_trip(&7u32);
        round_trip(&"text".to_owned());
        round_trip(&serde_bytes::ByteBuf::from(vec![1, 2, 3]));
        round_trip(&Some(vec![Some(1u8), None]));
        round_trip(&(1u8, -2i32, ("three".to_owned(), [4u64; 4])));
        round_trip(&Meters(-0.5));
        round_trip(&Unit);
        round_trip(&HashMap::from([(1u32, Shape::Rect(1, 2)), (2, Shape::Empty)]));
        round_trip(&list(100));
    }

    #[test]
    fn depth_is_counted_as_documented() {
        let depth_ok = |bytes: &[u8], limit| decode_value::<Vec<Option<u32>>>(bytes, limit);
        let bytes = postcard::to_allocvec(&vec![Some(7u32)]).unwrap();
        assert!(depth_ok(&bytes, 2).is_ok());
        assert_eq!(depth_ok(&bytes, 1), Err(DecodeError::TooDeep { limit: 1 }));
        let bytes = postcard::to_allocvec(&vec![None::<u32>]).unwrap();
        assert!(depth_ok(&bytes, 1).is_ok());
        // Scalars and `None` are no level; every enum value is one, a tuple variant two.
        assert_eq!(decode_value::<u32>(&[5], 0), Ok(5));
        assert_eq!(decode_value::<Option<u32>>(&[0], 0), Ok(None));
        assert_eq!(decode_value::<Node>(&[0], 0), Err(DecodeError::TooDeep { limit: 0 }));
        let rect = postcard::to_allocvec(&Shape::Rect(1, 2)).unwrap();
        assert!(decode_value::<Shape>(&rect, 2).is_ok());
        assert!(decode_value::<Shape>(&rect, 1).is_err());
    }

    #[test]
    fn a_limit_of_n_accepts_depth_n_and_refuses_n_plus_one() {
        for n in [1, 2, 5, 100, DEFAULT_MAX_NESTING] {
            let depth = n as usize;
            assert_eq!(decode_value::<Node>(&chain(depth), n), Ok(list(depth)));
            let err = decode_value::<Node>(&chain(depth + 1), n).unwrap_err();
            assert_eq!(err, DecodeError::TooDeep { limit: n });
        }
    }

    #[test]
    fn lists_within_the_default_limit_decode_and_deeper_ones_do_not() {
        let bytes = postcard::to_allocvec(&list(100)).unwrap();
        assert_eq!(bytes, chain(100));
        assert_eq!(decode_value::<Node>(&bytes, DEFAULT_MAX_NESTING), Ok(list(100)));
        let bytes = postcard::to_allocvec(&list(200)).unwrap();
        let err = decode_value::<Node>(&bytes, DEFAULT_MAX_NESTING).unwrap_err();
        assert_eq!(err, DecodeError::TooDeep { limit: 128 });
        assert_eq!(err.to_string(), "value nests deeper than the limit of 128 levels");
    }

    #[test]
    fn a_million_levels_fail_fast_on_a_small_stack() {
        // Built as bytes: building or dropping the value itself would overflow the stack.
        let bytes = chain(1_000_000);
        let (list, tree) = on_small_stack(move || {
            let list = decode_value::<Node>(&bytes, DEFAULT_MAX_NESTING).map(drop);
            let tree = decode_value::<Tree>(&bytes, DEFAULT_MAX_NESTING).map(drop);
            (list, tree)
        });
        assert_eq!(list, Err(DecodeError::TooDeep { limit: DEFAULT_MAX_NESTING }));
        assert_eq!(tree, Err(DecodeError::TooDeep { limit: DEFAULT_MAX_NESTING }));
    }

    #[test]
    fn the_default_limit_fits_a_small_stack() {
        let bytes = chain(DEFAULT_MAX_NESTING as usize / 2);
        let tree = on_small_stack(move || decode_value::<Tree>(&bytes, DEFAULT_MAX_NESTING));
        assert!(tree.is_ok());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = postcard::to_allocvec(&everything()).unwrap();
        bytes.extend_from_slice(&[0, 0]);
        let err = decode_value::<Everything>(&bytes, DEFAULT_MAX_NESTING).unwrap_err();
        assert_eq!(err, DecodeError::Trailing { bytes: 2 });
        assert_eq!(err.to_string(), "2 trailing bytes (the two sides disagree on its type)");
    }

    #[test]
    fn garbage_is_invalid() {
        let err = decode_value::<bool>(&[2], DEFAULT_MAX_NESTING).unwrap_err();
        assert_eq!(err, DecodeError::Invalid(postcard::Error::DeserializeBadBool));
        assert_eq!(err.to_string(), postcard::Error::DeserializeBadBool.to_string());
        let err = decode_value::<String>(&[3, 0xff, 0xfe, 0xfd], DEFAULT_MAX_NESTING);
        assert_eq!(err, Err(DecodeError::Invalid(postcard::Error::DeserializeBadUtf8)));
        let err = decode_value::<Everything>(&[], DEFAULT_MAX_NESTING);
        assert_eq!(err, Err(DecodeError::Invalid(postcard::Error::DeserializeUnexpectedEnd)));
        // Deep garbage still reports the depth, found before the bytes run out.
        let err = decode_value::<Node>(&[1; 200], DEFAULT_MAX_NESTING);
        assert_eq!(err, Err(DecodeError::TooDeep { limit: DEFAULT_MAX_NESTING }));
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Value {
        Leaf(u8),
        Text(String),
        List(Vec<Value>),
        Record { key: Option<Box<Value>>, values: HashMap<u8, Value> },
    }

    impl Value {
        /// The depth as [`decode_value`] documents it.
        fn depth(&self) -> u32 {
            fn deepest<'a>(values: impl Iterator<Item = &'a Value>) -> u32 {
                values.map(Value::depth).max().unwrap_or(0)
            }
            // The enum value is one level; a tuple or struct variant's fields are the next.
            match self {
                Value::Leaf(_) | Value::Text(_) => 1,
                Value::List(items) => 2 + deepest(items.iter()),
                Value::Record { key, values } => {
                    let key = key.as_ref().map_or(0, |key| 1 + key.depth());
                    2 + key.max(1 + deepest(values.values()))
                }
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![any::<u8>().prop_map(Value::Leaf), ".{0,8}".prop_map(Value::Text)];
        leaf.prop_recursive(6, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                (
                    prop::option::of(inner.clone()),
                    prop::collection::hash_map(any::<u8>(), inner, 0..3)
                )
                    .prop_map(|(key, values)| Value::Record { key: key.map(Box::new), values }),
            ]
        })
    }

    proptest! {
        #[test]
        fn values_decode_exactly_at_their_depth(value in value()) {
            let bytes = postcard::to_allocvec(&value).unwrap();
            let depth = value.depth();
            prop_assert_eq!(decode_value::<Value>(&bytes, depth), Ok(value.clone()));
            prop_assert_eq!(postcard::from_bytes::<Value>(&bytes), Ok(value));
            let too_shallow = decode_value::<Value>(&bytes, depth - 1);
            prop_assert_eq!(too_shallow, Err(DecodeError::TooDeep { limit: depth - 1 }));
        }
    }
}
