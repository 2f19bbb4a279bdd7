//! Values of secret-ish fields: `password=…`, `token: …`, `"api_key": "…"`, `KEY="…"`.

use memchr::memchr2_iter;

use super::scan::{at, before, entropy, is_alnum};
use super::Span;

/// Longest key name considered.
const MAX_KEY: usize = 64;
/// Longest value considered.
const MAX_VALUE: usize = 512;

/// Whether a JSON object field `key: value` holds a secret by the `secret_value` rule
/// (secret-ish key such as password/secret/token/api_key/private_key/credential/auth, and a
/// value that looks like a real secret: length and entropy checks, not a placeholder such as
/// `"changeme"`, `"xxxx"`, `"<your-key>"`, `"${VAR}"`, `"***"`, `"null"`, `"true"`).
pub fn secret_field(key: &str, value: &str) -> bool {
    secret_key(key.as_bytes()) && secret_like(strip_auth_scheme(value.as_bytes()))
}

/// Drops an HTTP auth scheme (`Bearer `, `Basic `, `Token `) before the credential.
fn strip_auth_scheme(v: &[u8]) -> &[u8] {
    for scheme in [&b"bearer "[..], b"basic ", b"token "] {
        if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return &v[scheme.len()..];
        }
    }
    v
}

/// Words of a key name that make it secret-ish on their own.
const SECRET_WORDS: &[&str] = &[
    "token",
    "auth",
    "pwd",
    "pass",
    "creds",
    "authorization",
    "bearer",
    "oauth",
    "apikey",
    "passcode",
    "pin",
    "otp",
];
/// Stems a key word may end with (`dbpassword`, `clientsecret`) or start with (`secretkey`).
const SECRET_STEMS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "authtoken",
    "accesstoken",
    "refreshtoken",
    "sessiontoken",
    "bearertoken",
    "accountkey",
];
/// What may follow a stem inside one word (`secrets`, `secretkey`, `passwordhash`).
const STEM_SUFFIXES: &[&str] = &["", "s", "key", "keys", "value", "hash"];
/// `first second` word pairs that name a key (`api_key`, `PrivateKey`, `signing-key`).
const KEY_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
    ("signing", "key"),
    ("encryption", "key"),
    ("master", "key"),
    ("session", "key"),
    ("account", "key"),
    ("shared", "key"),
    ("app", "secret"),
];
/// Last words that make the field describe a secret rather than hold one (`password_file`).
const DESCRIPTIVE_LAST: &[&str] = &[
    "file",
    "path",
    "dir",
    "url",
    "uri",
    "endpoint",
    "name",
    "type",
    "method",
    "mode",
    "policy",
    "length",
    "len",
    "count",
    "limit",
    "min",
    "max",
    "expiry",
    "expires",
    "expiration",
    "expire",
    "ttl",
    "timeout",
    "enabled",
    "enable",
    "required",
    "provider",
    "header",
    "env",
    "var",
    "id",
    "version",
    "format",
    "scheme",
    "field",
    "hint",
    "label",
    "prompt",
    "rotation",
    "strength",
    "regex",
    "pattern",
    "changed",
    "updated",
    "at",
    "date",
    "time",
    "kind",
    "size",
    "algorithm",
    "algo",
    "rounds",
    "store",
    "manager",
    "service",
    "arn",
    "region",
    "source",
    "ref",
    "usage",
    "prefix",
    "location",
    "placeholder",
    "tokens",
    "budget",
    "reset",
    "input",
    "validator",
];
/// First words that make the field a setting about secrets (`max_tokens`, `is_auth`).
const DESCRIPTIVE_FIRST: &[&str] = &[
    "max", "min", "num", "is", "has", "use", "enable", "disable", "show", "hide", "forgot", "no",
    "total", "count",
];

/// Splits a key into lower-case words at non-alphanumerics and camelCase humps
/// (`clientSecret` → client, secret; `APIKey` → api, key). At most 12 words.
fn key_words(key: &[u8]) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for (i, &c) in key.iter().enumerate() {
        if !is_alnum(c) {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = before(key, i);
        let next = at(key, i + 1);
        let hump = c.is_ascii_uppercase()
            && (prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next.is_ascii_lowercase()));
        if hump && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(c.to_ascii_lowercase() as char);
        if words.len() >= 12 {
            break;
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Whether one word names a secret.
fn secret_word(w: &str) -> bool {
    SECRET_WORDS.contains(&w)
        || SECRET_STEMS.iter().any(|stem| {
            w.ends_with(stem)
                || w.strip_prefix(stem)
                    .is_some_and(|rest| STEM_SUFFIXES.contains(&rest))
        })
}

/// Whether a key name is secret-ish: a secret word or key pair, and not a descriptive field
/// such as `password_file`, `token_url` or `max_tokens`.
fn secret_key(key: &[u8]) -> bool {
    if key.is_empty() || key.len() > MAX_KEY {
        return false;
    }
    // Cheap screen before splitting: every secret word contains one of these.
    let mut lower = [0u8; MAX_KEY];
    let lower = &mut lower[..key.len()];
    lower.copy_from_slice(key);
    lower.make_ascii_lowercase();
    const SCREEN: &[&[u8]] = &[
        b"pass", b"pwd", b"secret", b"token", b"key", b"auth", b"cred", b"bearer", b"pin", b"otp",
    ];
    if !SCREEN
        .iter()
        .any(|s| lower.windows(s.len()).any(|w| w == *s))
    {
        return false;
    }
    let words = key_words(key);
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return false;
    };
    if DESCRIPTIVE_FIRST.contains(&first.as_str())
        || (words.len() > 1 && DESCRIPTIVE_LAST.contains(&last.as_str()))
    {
        return false;
    }
    words.iter().any(|w| secret_word(w))
        || words
            .windows(2)
            .any(|p| KEY_PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
}

/// Substrings that mark a value as a placeholder or a reference, not a secret.
const PLACEHOLDER_PARTS: &[&str] = &[
    "xxxx",
    "****",
    "....",
    "your",
    "example",
    "placeholder",
    "changeme",
    "change_me",
    "redacted",
    "dummy",
    "<",
    ">",
    "${",
    "{{",
    "%(",
    "$(",
    "(",
    "[",
    "todo",
    "fixme",
    "secret_here",
    "insert",
    "replace",
];

/// Whether a value looks like a real secret: 8-512 printable ASCII bytes without spaces, not
/// a placeholder, an env/template reference, code, a path or URL, a number or a plain
/// identifier; at least two character classes and some entropy.
fn secret_like(v: &[u8]) -> bool {
    if v.len() < 8 || v.len() > MAX_VALUE || v.iter().any(|&c| !(0x21..0x7f).contains(&c)) {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    let lower_str = std::str::from_utf8(&lower).unwrap_or("");
    if PLACEHOLDER_PARTS.iter().any(|p| lower_str.contains(p))
        || matches!(v[0], b'$' | b'%' | b'{' | b'@' | b'#' | b'&' | b'*')
        || lower.starts_with(b"http://")
        || lower.starts_with(b"https://")
        || lower.starts_with(b"file:")
        || ((v[0] == b'/' || v.starts_with(b"./") || v.starts_with(b"~/"))
            && v[1..].contains(&b'/'))
    {
        return false;
    }
    let lowers = v.iter().any(u8::is_ascii_lowercase);
    let uppers = v.iter().any(u8::is_ascii_uppercase);
    let digits = v.iter().any(u8::is_ascii_digit);
    let symbols = v
        .iter()
        .any(|&c| !is_alnum(c) && !matches!(c, b'_' | b'.' | b'-'));
    let identifier = !digits && !symbols;
    if identifier && (v.len() < 16 || !(lowers && uppers) || v.contains(&b'.') || v.contains(&b'_'))
    {
        return false;
    }
    let classes = [lowers, uppers, digits, symbols]
        .iter()
        .filter(|&&c| c)
        .count();
    classes >= 2 && entropy(v) >= 2.5
}

/// Bytes of a key name in free text.
fn key_byte(c: u8) -> bool {
    is_alnum(c) || matches!(c, b'_' | b'.' | b'-')
}

/// Finds the values of secret-ish fields in free text: `key=value`, `key: value`,
/// `"key": "value"`, `KEY="value"`, `key := "value"`, `'key' => 'value'` (also with
/// JSON-escaped quotes), and the password of URL userinfo (`postgres://user:pass@host`).
/// The span is the value only, without quotes or an auth scheme.
pub(super) fn find_secret_values(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    find_url_passwords(b, out);
    let mut resume = 0;
    for sep in memchr2_iter(b'=', b':', b) {
        if sep < resume {
            continue;
        }
        let Some(v) = value_start(b, sep) else {
            continue;
        };
        let Some((ks, ke)) = key_before(b, sep) else {
            continue;
        };
        if !secret_key(&b[ks..ke]) {
            continue;
        }
        if let Some((s, e, after)) = value_at(b, v) {
            if secret_like(&b[s..e]) {
                out.push(Span { start: s, end: e });
                resume = after;
            }
        }
    }
}

/// Finds the password of URL userinfo, `scheme://user:password@host`: the span is the
/// password only; it must be 4+ bytes and not a placeholder (`${DB_PASS}`, `<password>`, `***`).
fn find_url_passwords(b: &[u8], out: &mut Vec<Span>) {
    for p in memchr::memmem::find_iter(b, b"://") {
        let user = p + 3;
        let mut i = user;
        while i - user < MAX_KEY
            && !matches!(
                at(b, i),
                0 | b':' | b'/' | b'@' | b' ' | b'\n' | b'"' | b'\''
            )
        {
            i += 1;
        }
        if at(b, i) != b':' || i == user {
            continue;
        }
        let pass = i + 1;
        let mut j = pass;
        while j - pass < MAX_VALUE
            && !matches!(
                at(b, j),
                0 | b'@' | b'/' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'<' | b'>'
            )
        {
            j += 1;
        }
        let value = &b[pass..j];
        let lower = value.to_ascii_lowercase();
        let placeholder = PLACEHOLDER_PARTS
            .iter()
            .any(|p| memchr::memmem::find(&lower, p.as_bytes()).is_some())
            || matches!(value.first(), Some(b'$' | b'%' | b'{' | b'*'));
        if at(b, j) == b'@' && value.len() >= 4 && !placeholder {
            out.push(Span {
                start: pass,
                end: j,
            });
        }
    }
}

/// Where the value after the separator at `sep` starts, or `None` when `sep` is not an
/// assignment (`==`, `!=`, `::`, `://`, a clock time).
fn value_start(b: &[u8], sep: usize) -> Option<usize> {
    let prev = before(b, sep);
    let next = at(b, sep + 1);
    let mut v = sep + 1;
    if b[sep] == b'=' {
        if b"=!<>+-*/%&|^~:".contains(&prev) || next == b'=' {
            return None;
        }
        if next == b'>' {
            v += 1;
        }
    } else {
        if prev == b':'
            || next == b':'
            || next == b'/'
            || (prev.is_ascii_digit() && next.is_ascii_digit())
        {
            return None;
        }
        if next == b'=' {
            v += 1;
        }
    }
    let floor = v + 8;
    while v < floor && matches!(at(b, v), b' ' | b'\t') {
        v += 1;
    }
    Some(v)
}

/// The key name before the separator at `sep` (spaces and a closing quote, also JSON-escaped,
/// skipped).
fn key_before(b: &[u8], sep: usize) -> Option<(usize, usize)> {
    let mut e = sep;
    let floor = sep.saturating_sub(4);
    while e > floor && matches!(b[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    if e > 0 && matches!(b[e - 1], b'"' | b'\'' | b'`') {
        e -= 1;
        if e > 0 && b[e - 1] == b'\\' {
            e -= 1;
        }
    }
    let mut s = e;
    while s > 0 && e - s <= MAX_KEY && key_byte(b[s - 1]) {
        s -= 1;
    }
    (s < e && e - s <= MAX_KEY).then_some((s, e))
}

/// Whether a URL query field `name=` starts at `i` (so a `&` before it ends a bare value).
fn next_query_field(b: &[u8], i: usize) -> bool {
    let mut k = i;
    while k - i < MAX_KEY && key_byte(at(b, k)) {
        k += 1;
    }
    k > i && at(b, k) == b'='
}

/// The value starting at `v`: quoted (to its closing quote on the same line) or bare (to
/// whitespace or punctuation). Returns its span and where scanning may resume.
fn value_at(b: &[u8], mut v: usize) -> Option<(usize, usize, usize)> {
    let escaped = at(b, v) == b'\\' && matches!(at(b, v + 1), b'"' | b'\'');
    let quote = match at(b, v) {
        b'"' | b'\'' | b'`' => Some(at(b, v)),
        b'\\' if escaped => Some(at(b, v + 1)),
        _ => None,
    };
    if let Some(q) = quote {
        v += if escaped { 2 } else { 1 };
        let mut j = v;
        loop {
            let c = at(b, j);
            if j - v > MAX_VALUE {
                return None;
            }
            if c == 0 || c == b'\n' || c == b'\r' {
                return None;
            }
            if escaped && c == b'\\' && at(b, j + 1) == q {
                break;
            }
            if !escaped && c == q {
                break;
            }
            if !escaped && c == b'\\' {
                j += 1;
            }
            j += 1;
        }
        let inner = &b[v..j];
        let cred = strip_auth_scheme(inner);
        return Some((v + inner.len() - cred.len(), j, j + 1));
    }
    let bare_end = |mut j: usize| {
        let s = j;
        while j - s < MAX_VALUE
            && !matches!(
                at(b, j),
                0 | b' '
                    | b'\t'
                    | b'\r'
                    | b'\n'
                    | b'"'
                    | b'\''
                    | b'`'
                    | b','
                    | b';'
                    | b'<'
                    | b'>'
                    | b')'
                    | b']'
                    | b'}'
                    | b'\\'
            )
            && !(at(b, j) == b'&' && next_query_field(b, j + 1))
        {
            j += 1;
        }
        while j > s && matches!(b[j - 1], b'.' | b':') {
            j -= 1;
        }
        j
    };
    let mut e = bare_end(v);
    let scheme = &b[v..e];
    let auth_scheme = [&b"bearer"[..], b"basic", b"token"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    if auth_scheme && at(b, e) == b' ' {
        v = e + 1;
        e = bare_end(v);
    }
    (e > v).then_some((v, e, e))
}
