//! Core values → Python objects, directly: a serde `Serializer` whose output is a Python
//! object, so events, states, reports and anchors reach Python as the core serializes them
//! (same keys, same shapes as their JSON) without JSON text in between.
//!
//! Structs and maps become `dict`s, sequences `list`s, numbers `int`/`float`, `None` for
//! unit and absent options; an enum variant with data becomes `{variant: data}`, as serde_json
//! writes it. Short strings (keys above all: every event has the same dozen) are made once per
//! [`Strings`] cache and shared, which saves an allocation and a hash per dict entry.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString};
use pyo3::IntoPyObjectExt;
use serde::ser::{self, Serialize};

/// Strings longer than this are never cached (outputs, prompts: rarely repeated).
const MAX_CACHED_LEN: usize = 48;
/// The cache stops growing here (a log of many distinct short strings).
const MAX_CACHED: usize = 8192;

/// Python strings made so far, for reuse across values (one per reader or conversion).
#[derive(Default)]
pub struct Strings {
    map: HashMap<Box<str>, Py<PyString>, BuildHasherDefault<FxHasher>>,
}

/// The Fx hash (rustc's): a few cycles per word. The cache is looked up for every key and
/// short string of every event, where SipHash cost more than building the dict entry; it
/// holds no attacker-chosen secrets worth the DoS resistance, and stops growing anyway.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Strings {
    fn get<'py>(&mut self, py: Python<'py>, s: &str) -> Bound<'py, PyAny> {
        if s.len() > MAX_CACHED_LEN {
            return PyString::new(py, s).into_any();
        }
        if let Some(p) = self.map.get(s) {
            return p.bind(py).clone().into_any();
        }
        let p = PyString::new(py, s);
        if self.map.len() < MAX_CACHED {
            self.map.insert(s.into(), p.clone().unbind());
        }
        p.into_any()
    }
}

/// `value` as a Python object, sharing short strings through `strings`.
pub fn to_py_with<'py, T: Serialize + ?Sized>(
    py: Python<'py>,
    strings: &mut Strings,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    value.serialize(Ser { py, strings }).map_err(|e| e.0)
}

/// `value` as a Python object.
pub fn to_py<'py, T: Serialize + ?Sized>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    to_py_with(py, &mut Strings::default(), value)
}

/// A Python error raised while building (an allocation failed), or serde's own.
pub struct Error(PyErr);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(PyValueError::new_err(msg.to_string()))
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Error {
        Error(e)
    }
}

type Res<'py> = Result<Bound<'py, PyAny>, Error>;

struct Ser<'a, 'py> {
    py: Python<'py>,
    strings: &'a mut Strings,
}

impl<'a, 'py> Ser<'a, 'py> {
    fn int<T: IntoPyObject<'py>>(self, v: T) -> Res<'py> {
        Ok(v.into_bound_py_any(self.py)?)
    }
}

/// A list being built.
struct Seq<'a, 'py> {
    py: Python<'py>,
    strings: &'a mut Strings,
    items: Vec<Bound<'py, PyAny>>,
    /// `Some(variant)`: a tuple variant, wrapped as `{variant: [...]}`.
    variant: Option<&'static str>,
}

impl<'a, 'py> Seq<'a, 'py> {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let item = value.serialize(Ser {
            py: self.py,
            strings: &mut *self.strings,
        })?;
        self.items.push(item);
        Ok(())
    }

    fn finish(self) -> Res<'py> {
        let list = PyList::new(self.py, self.items)?.into_any();
        wrap(self.py, self.strings, self.variant, list)
    }
}

/// A dict being built.
struct Map<'a, 'py> {
    py: Python<'py>,
    strings: &'a mut Strings,
    dict: Bound<'py, PyDict>,
    key: Option<Bound<'py, PyAny>>,
    /// `Some(variant)`: a struct variant, wrapped as `{variant: {...}}`.
    variant: Option<&'static str>,
}

impl<'a, 'py> Map<'a, 'py> {
    fn value_of<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<'py> {
        value.serialize(Ser {
            py: self.py,
            strings: &mut *self.strings,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        let value = self.value_of(value)?;
        let key = self.strings.get(self.py, key);
        self.dict.set_item(key, value)?;
        Ok(())
    }

    fn finish(self) -> Res<'py> {
        wrap(self.py, self.strings, self.variant, self.dict.into_any())
    }
}

fn wrap<'py>(
    py: Python<'py>,
    strings: &mut Strings,
    variant: Option<&'static str>,
    value: Bound<'py, PyAny>,
) -> Res<'py> {
    match variant {
        None => Ok(value),
        Some(name) => {
            let dict = PyDict::new(py);
            dict.set_item(strings.get(py, name), value)?;
            Ok(dict.into_any())
        }
    }
}

impl<'a, 'py> ser::Serializer for Ser<'a, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    type SerializeSeq = Seq<'a, 'py>;
    type SerializeTuple = Seq<'a, 'py>;
    type SerializeTupleStruct = Seq<'a, 'py>;
    type SerializeTupleVariant = Seq<'a, 'py>;
    type SerializeMap = Map<'a, 'py>;
    type SerializeStruct = Map<'a, 'py>;
    type SerializeStructVariant = Map<'a, 'py>;

    fn serialize_bool(self, v: bool) -> Res<'py> {
        self.int(v)
    }
    fn serialize_i8(self, v: i8) -> Res<'py> {
        self.int(v)
    }
    fn serialize_i16(self, v: i16) -> Res<'py> {
        self.int(v)
    }
    fn serialize_i32(self, v: i32) -> Res<'py> {
        self.int(v)
    }
    fn serialize_i64(self, v: i64) -> Res<'py> {
        self.int(v)
    }
    fn serialize_i128(self, v: i128) -> Res<'py> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Res<'py> {
        self.int(v)
    }
    fn serialize_u16(self, v: u16) -> Res<'py> {
        self.int(v)
    }
    fn serialize_u32(self, v: u32) -> Res<'py> {
        self.int(v)
    }
    fn serialize_u64(self, v: u64) -> Res<'py> {
        self.int(v)
    }
    fn serialize_u128(self, v: u128) -> Res<'py> {
        self.int(v)
    }
    fn serialize_f32(self, v: f32) -> Res<'py> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Res<'py> {
        Ok(PyFloat::new(self.py, v).into_any())
    }
    fn serialize_char(self, v: char) -> Res<'py> {
        let mut buf = [0u8; 4];
        Ok(self.strings.get(self.py, v.encode_utf8(&mut buf)))
    }
    fn serialize_str(self, v: &str) -> Res<'py> {
        Ok(self.strings.get(self.py, v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Res<'py> {
        Ok(PyBytes::new(self.py, v).into_any())
    }
    fn serialize_none(self) -> Res<'py> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res<'py> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res<'py> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Res<'py> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Res<'py> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Res<'py> {
        if name == "$serde_json::private::RawValue" {
            // serde_json's raw JSON text: parse it, as serde_json itself would emit it.
            let text = value
                .serialize(serde_json::value::Serializer)
                .map_err(<Error as ser::Error>::custom)?;
            let text = text.as_str().unwrap_or("null");
            let parsed: serde_json::Value =
                serde_json::from_str(text).map_err(<Error as ser::Error>::custom)?;
            return parsed.serialize(self);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Res<'py> {
        let py = self.py;
        let strings = self.strings;
        let inner = value.serialize(Ser {
            py,
            strings: &mut *strings,
        })?;
        wrap(py, strings, Some(variant), inner)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a, 'py>, Error> {
        Ok(Seq {
            py: self.py,
            strings: self.strings,
            items: Vec::with_capacity(len.unwrap_or(0)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a, 'py>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Seq<'a, 'py>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'a, 'py>, Error> {
        let mut seq = self.serialize_seq(Some(len))?;
        seq.variant = Some(variant);
        Ok(seq)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a, 'py>, Error> {
        Ok(Map {
            py: self.py,
            dict: PyDict::new(self.py),
            strings: self.strings,
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Map<'a, 'py>, Error> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Map<'a, 'py>, Error> {
        let mut map = self.serialize_map(None)?;
        map.variant = Some(variant);
        Ok(map)
    }
}

impl<'py> ser::SerializeSeq for Seq<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeTuple for Seq<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeTupleStruct for Seq<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeTupleVariant for Seq<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeMap for Map<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(self.value_of(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let value = self.value_of(value)?;
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("map value without a key"))?;
        self.dict.set_item(key, value)?;
        Ok(())
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeStruct for Map<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeStructVariant for Map<'_, 'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Res<'py> {
        self.finish()
    }
}
