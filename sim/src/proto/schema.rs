//! The message layouts in `schema.txt`, parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A field's wire kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 string.
    String,
    /// Bytes (base64 in JSON).
    Bytes,
    /// Boolean.
    Bool,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// Double.
    Double,
    /// A nested message, by full name.
    Message(String),
    /// An embedded message whose fields are inlined in the parent's JSON (Go's `json:",inline"`).
    Inline(String),
    /// `map<string, V>`.
    Map(Box<Kind>),
}

/// One field of a message.
#[derive(Debug, Clone)]
pub struct Field {
    /// Field number.
    pub tag: u32,
    /// JSON name.
    pub name: String,
    /// Whether repeated.
    pub repeated: bool,
    /// Wire kind.
    pub kind: Kind,
}

/// Every message's fields by full name.
pub struct Schema {
    messages: HashMap<String, Vec<Field>>,
}

fn parse_kind(s: &str) -> Option<Kind> {
    Some(match s {
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        "bool" => Kind::Bool,
        "int32" => Kind::Int32,
        "int64" => Kind::Int64,
        "double" => Kind::Double,
        other => {
            if let Some(name) = other.strip_prefix("msg:") {
                Kind::Message(name.to_owned())
            } else if let Some(name) = other.strip_prefix("inline:") {
                Kind::Inline(name.to_owned())
            } else if let Some(v) = other.strip_prefix("map:") {
                Kind::Map(Box::new(parse_kind(v)?))
            } else {
                return None;
            }
        }
    })
}

fn parse(text: &str) -> Schema {
    let mut messages: HashMap<String, Vec<Field>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("message ") {
            messages.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        let (Some(msg), [tag, name, rep, kind]) = (&current, parts.as_slice()) else { continue };
        let (Ok(tag), Some(kind)) = (tag.parse(), parse_kind(kind)) else { continue };
        if let Some(fields) = messages.get_mut(msg) {
            fields.push(Field { tag, name: (*name).to_owned(), repeated: *rep == "*", kind });
        }
    }
    Schema { messages }
}

/// The parsed schema.
pub fn get() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(include_str!("schema.txt")))
}

impl Schema {
    /// The fields of a message (none for an unknown one).
    pub fn fields(&self, name: &str) -> &[Field] {
        self.messages.get(name).map_or(&[], Vec::as_slice)
    }

    /// The message of a kind in a package (names match case-insensitively, as the bindings rename
    /// acronyms).
    pub fn find_message(&self, package: &str, kind: &str) -> Option<String> {
        let exact = format!("{package}.{kind}");
        if self.messages.contains_key(&exact) {
            return Some(exact);
        }
        let lower = exact.to_lowercase();
        self.messages.keys().find(|k| k.to_lowercase() == lower).cloned()
    }
}
