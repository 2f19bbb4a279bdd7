//! Reading a policy file into a JSON value, strictly: a regular file under a size limit (no
//! symlink, FIFO or device), JSON or YAML with duplicate keys refused (a second value for a key
//! is a way to smuggle a setting past a reviewer who reads the first), YAML without anchors,
//! aliases, tags or several documents. Every value's position is kept, so later errors can name
//! the line and column of the rule they are about.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::PolicyError;

/// Largest policy file read (bytes).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Deepest nesting of arrays and objects in a policy file.
const MAX_DEPTH: usize = 32;

/// Where each value of a document starts: JSON Pointer → (line, column), both from 1.
pub(crate) type Positions = HashMap<String, (usize, usize)>;

/// A parsed policy document.
pub(crate) struct Doc {
    pub(crate) value: Value,
    pub(crate) positions: Positions,
}

/// The two syntaxes of a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// JSON (RFC 8259).
    Json,
    /// YAML 1.2, the subset that maps to JSON (no anchors, aliases or tags).
    Yaml,
}

impl Syntax {
    /// The syntax a file name says (`.json`, `.yaml`, `.yml`), or `None`.
    pub fn of_path(path: &Path) -> Option<Syntax> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Syntax::Json),
            "yaml" | "yml" => Some(Syntax::Yaml),
            _ => None,
        }
    }
}

/// Read a policy file: refuse anything but a regular file of at most [`MAX_POLICY_BYTES`]
/// (checked on the open file too, so swapping the path after the check changes nothing).
pub(crate) fn read_file(path: &Path) -> Result<String, PolicyError> {
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| PolicyError::file(format!("cannot read policy {shown}: {e}")))?;
    let kind = file_kind(&meta);
    if kind != "regular file" {
        return Err(PolicyError::file(format!(
            "policy {shown} is a {kind}, not a regular file: give the path of the file itself"
        )));
    }
    let mut file = open_no_follow(path)
        .map_err(|e| PolicyError::file(format!("cannot open policy {shown}: {e}")))?;
    let opened = file
        .metadata()
        .map_err(|e| PolicyError::file(format!("cannot read policy {shown}: {e}")))?;
    if !opened.is_file() || !same_file(&meta, &opened) {
        return Err(PolicyError::file(format!(
            "policy {shown} changed while it was opened: refusing it"
        )));
    }
    if opened.len() > MAX_POLICY_BYTES {
        return Err(too_large(&shown, opened.len()));
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PolicyError::file(format!("cannot read policy {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(too_large(&shown, bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        PolicyError::file(format!(
            "policy {shown} is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn too_large(shown: &impl fmt::Display, len: u64) -> PolicyError {
    PolicyError::file(format!(
        "policy {shown} is {len} bytes, over the limit of {MAX_POLICY_BYTES}"
    ))
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: a FIFO swapped in after the check must not hang the open.
    #[cfg(target_os = "linux")]
    const FLAGS: i32 = 0o400000 | 0o4000; // O_NOFOLLOW | O_NONBLOCK
    #[cfg(not(target_os = "linux"))]
    const FLAGS: i32 = 0;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(FLAGS)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// Parse JSON text, refusing duplicate keys, with the position of every value.
pub(crate) fn parse_json(text: &str) -> Result<Doc, PolicyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = de
        .deserialize_any(StrictValue(0))
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            let (line, column) = (e.line(), e.column());
            let mut message = e.to_string();
            // serde_json appends " at line L column C"; the position is reported apart.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            PolicyError::syntax(message, line, column)
        })?;
    let positions = json_positions(text);
    Ok(Doc { value, positions })
}

/// A JSON value with duplicate object keys refused (serde_json keeps the last silently).
struct StrictValue(usize);

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.0 >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue(self.0 + 1))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.0 >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(StrictValue(self.0 + 1))?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key \"{}\"",
                    key.escape_debug()
                )));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Where each value of (valid) JSON text starts. A small scanner: the text was parsed already,
/// so it only tracks strings, nesting and keys.
fn json_positions(text: &str) -> Positions {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let mut out = Positions::new();
    let mut stack: Vec<(Frame, String)> = Vec::new();
    let (mut line, mut col) = (1usize, 1usize);
    let mut chars = text.chars().peekable();
    // The pointer of the value that starts at the next significant char.
    let here = |stack: &[(Frame, String)]| -> String {
        match stack.last() {
            None => String::new(),
            Some((Frame::Object(Some(k)), base)) => format!("{base}/{}", escape(k)),
            Some((Frame::Object(None), base)) => base.clone(),
            Some((Frame::Array(i), base)) => format!("{base}/{i}"),
        }
    };
    let mut expect_value = true;
    while let Some(c) = chars.next() {
        let (l, co) = (line, col);
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    col += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            col += 1;
                            match chars.next() {
                                Some('u') => {
                                    let hex: String = chars.by_ref().take(4).collect();
                                    col += 4;
                                    if let Some(ch) =
                                        u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                                    {
                                        s.push(ch);
                                    }
                                }
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('r') => s.push('\r'),
                                Some('b') => s.push('\u{8}'),
                                Some('f') => s.push('\u{c}'),
                                Some(other) => s.push(other),
                                None => {}
                            }
                        }
                        c => s.push(c),
                    }
                }
                let is_key = matches!(stack.last(), Some((Frame::Object(None), _)));
                if is_key {
                    if let Some((Frame::Object(k), _)) = stack.last_mut() {
                        *k = Some(s);
                    }
                } else if expect_value {
                    out.insert(here(&stack), (l, co));
                    expect_value = false;
                }
            }
            ':' => expect_value = true,
            ',' => match stack.last_mut() {
                Some((Frame::Object(k), _)) => *k = None,
                Some((Frame::Array(i), _)) => {
                    *i += 1;
                    expect_value = true;
                }
                None => {}
            },
            '{' | '[' => {
                let at = here(&stack);
                out.insert(at.clone(), (l, co));
                if c == '{' {
                    stack.push((Frame::Object(None), at));
                    expect_value = false;
                } else {
                    stack.push((Frame::Array(0), at));
                    expect_value = true;
                }
            }
            '}' | ']' => {
                stack.pop();
                expect_value = false;
            }
            _ => {
                // A number, true, false or null: record its start, skip the rest of it.
                if expect_value {
                    out.insert(here(&stack), (l, co));
                    expect_value = false;
                }
            }
        }
    }
    out
}

/// RFC 6901 escaping of one pointer token.
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Parse YAML text into a JSON value with positions. Fails closed on what JSON has no form
/// for or what hides one value behind another: anchors, aliases, tags, complex keys,
/// duplicate keys, several documents.
pub(crate) fn parse_yaml(text: &str) -> Result<Doc, PolicyError> {
    let mut parser = Parser::new_from_str(text);
    let mut positions = Positions::new();
    let mut docs = 0usize;
    let mut root: Option<Value> = None;
    let mut stack: Vec<Open> = Vec::new();
    let mut keys: Vec<BTreeMap<String, ()>> = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            PolicyError::syntax(e.info().to_owned(), e.marker().line(), e.marker().col() + 1)
        })?;
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let refuse = |what: &str| Err(PolicyError::syntax(what.to_owned(), line, col));
        // A scalar in key position of an open mapping is a key, not a value.
        if let (Event::Scalar(s, style, anchor, tag), Some(open)) = (&event, stack.last_mut()) {
            if open.value.is_object() && open.key.is_none() {
                if *anchor != 0 || tag.is_some() {
                    return refuse("anchors and tags are not allowed in a policy");
                }
                let _ = style;
                let seen = keys.last_mut().expect("a key set per open mapping");
                if seen.insert(s.to_string(), ()).is_some() {
                    return refuse(&format!("duplicate key \"{}\"", s.escape_debug()));
                }
                open.key = Some(s.to_string());
                continue;
            }
        }
        let value = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return refuse("a policy file holds one YAML document");
                }
                continue;
            }
            Event::Alias(_) => return refuse("aliases are not allowed in a policy"),
            Event::Scalar(s, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return refuse("anchors and tags are not allowed in a policy");
                }
                scalar(&s, style)
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if anchor != 0 || tag.is_some() {
                    return refuse("anchors and tags are not allowed in a policy");
                }
                if stack.len() >= MAX_DEPTH {
                    return refuse(&format!("nesting deeper than {MAX_DEPTH} levels"));
                }
                if let Some(open) = stack.last() {
                    if open.value.is_object() && open.key.is_none() {
                        return refuse("mapping keys must be plain strings");
                    }
                }
                let pointer = child_pointer(stack.last());
                positions.insert(pointer.clone(), (line, col));
                let is_map = matches!(event, Event::MappingStart(..));
                if is_map {
                    keys.push(BTreeMap::new());
                }
                stack.push(Open {
                    value: if is_map {
                        Value::Object(Map::new())
                    } else {
                        Value::Array(Vec::new())
                    },
                    pointer,
                    key: None,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop().expect("the parser balances containers");
                if open.value.is_object() {
                    keys.pop();
                }
                open.value
            }
        };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return refuse("a policy file holds one YAML document");
                }
                positions.entry(String::new()).or_insert((line, col));
                root = Some(value);
            }
            Some(open) => {
                let pointer = child_pointer(Some(&*open));
                positions.entry(pointer).or_insert((line, col));
                match &mut open.value {
                    Value::Array(items) => items.push(value),
                    Value::Object(map) => {
                        let key = open.key.take().expect("a value follows its key");
                        map.insert(key, value);
                    }
                    _ => unreachable!("only containers are open"),
                }
            }
        }
    }
    Ok(Doc {
        value: root.unwrap_or(Value::Null),
        positions,
    })
}

/// An open YAML container: its value so far, its pointer, and (for a mapping) the key whose
/// value comes next.
struct Open {
    value: Value,
    pointer: String,
    key: Option<String>,
}

/// The pointer of the next value inside `open` (the root without one).
fn child_pointer(open: Option<&Open>) -> String {
    match open {
        None => String::new(),
        Some(o) => match &o.value {
            Value::Array(items) => format!("{}/{}", o.pointer, items.len()),
            _ => format!("{}/{}", o.pointer, escape(o.key.as_deref().unwrap_or(""))),
        },
    }
}

/// A plain YAML scalar resolved by the JSON schema of YAML 1.2 (`null`, booleans, numbers);
/// quoted and block scalars are strings.
fn scalar(s: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(s.to_owned());
    }
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = s.parse::<i64>() {
        return n.into();
    }
    if let Ok(n) = s.parse::<u64>() {
        return n.into();
    }
    let numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && s.bytes().any(|b| b.is_ascii_digit());
    if numeric {
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_owned())
}
