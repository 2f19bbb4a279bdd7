//! Credentials with a recognisable shape: AWS keys, provider API keys and JWTs.

use std::sync::LazyLock;

use memchr::memmem;
use regex::bytes::Regex;

use super::scan::{at, before, entropy, is_alnum};
use super::Span;

/// AWS access key ids: a documented 4-letter prefix and 16 base32 characters.
static AWS_ACCESS_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}")
        .expect("the AWS access key pattern is valid")
});

/// Names that introduce an AWS secret access key (`aws_secret_access_key`, `SecretAccessKey`).
static AWS_SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)aws[_.-]?secret|secret[_.-]?access[_.-]?key")
        .expect("the AWS secret name pattern is valid")
});

/// Provider-prefixed API keys, each with the provider's alphabet and minimum length.
static API_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?-u)(?:",
        r"sk-ant-[A-Za-z0-9_-]{32,}",
        r"|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{32,}",
        r"|sk-[A-Za-z0-9]{32,}",
        r"|gh[pousr]_[A-Za-z0-9]{36,}",
        r"|github_pat_[A-Za-z0-9_]{50,}",
        r"|xox[abpr]-[A-Za-z0-9-]{20,}",
        r"|[sr]k_(?:live|test)_[A-Za-z0-9]{20,}",
        r"|AIza[A-Za-z0-9_-]{35}",
        r"|glpat-[A-Za-z0-9_-]{20,}",
        r"|hf_[A-Za-z0-9]{30,}",
        r"|npm_[A-Za-z0-9]{36}",
        r"|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
        r")"
    ))
    .expect("the API key pattern is valid")
});

/// The word that makes an `SK` + 32 hex string a Twilio key rather than any hex id.
static TWILIO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i-u)twilio").expect("the Twilio pattern is valid"));

/// Bytes of a token-like key (`[A-Za-z0-9_-]`).
fn token_byte(c: u8) -> bool {
    is_alnum(c) || c == b'_' || c == b'-'
}

/// Whether a key body is a placeholder: repeated filler, a "your key" hint, or too few
/// distinct characters to be random.
fn placeholder(body: &[u8]) -> bool {
    const HINTS: &[&[u8]] = &[
        b"xxxx",
        b"your",
        b"example",
        b"placeholder",
        b"dummy",
        b"redacted",
        b"0000000",
        b"1234567890",
    ];
    let lower = body.to_ascii_lowercase();
    let distinct = {
        let mut seen = [false; 256];
        body.iter().for_each(|&c| seen[usize::from(c)] = true);
        seen.iter().filter(|&&s| s).count()
    };
    HINTS.iter().any(|h| memmem::find(&lower, h).is_some()) || distinct < 10 || entropy(body) < 3.0
}

/// Finds AWS access key ids (`AKIA…`, `ASIA…`, …: prefix + 16 of `[A-Z2-7]`). AWS's
/// documented example keys (ending in `EXAMPLE`) are test data and are skipped.
pub(super) fn find_aws_access_keys(text: &str, out: &mut Vec<Span>) {
    for span in aws_access_keys(text.as_bytes()) {
        out.push(span);
    }
}

fn aws_access_keys(b: &[u8]) -> impl Iterator<Item = Span> + '_ {
    AWS_ACCESS_KEY.find_iter(b).filter_map(move |m| {
        let bounded = !is_alnum(before(b, m.start())) && !is_alnum(at(b, m.end()));
        (bounded && !m.as_bytes().ends_with(b"EXAMPLE")).then_some(Span {
            start: m.start(),
            end: m.end(),
        })
    })
}

/// Whether `b[s..e]` is shaped like an AWS secret access key: 40 base64 chars with upper and
/// lower case and a digit or `/`/`+`, not hex (a git SHA), random-looking, not the example.
fn aws_secret_shape(run: &[u8]) -> bool {
    run.len() == 40
        && run.iter().any(u8::is_ascii_uppercase)
        && run.iter().any(u8::is_ascii_lowercase)
        && run
            .iter()
            .any(|&c| c.is_ascii_digit() || c == b'/' || c == b'+')
        && !run.iter().all(u8::is_ascii_hexdigit)
        && !run.ends_with(b"EXAMPLEKEY")
        && entropy(run) >= 4.0
}

/// A maximal run of `[A-Za-z0-9/+]` starting at `i` (ends before `=` padding is refused).
fn base64_run(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while is_alnum(at(b, j)) || matches!(at(b, j), b'/' | b'+') {
        j += 1;
    }
    j
}

/// Finds AWS secret access keys: 40 base64 chars right after a secret-key name (the rest of
/// the name, quotes, `:`/`=` and spaces between) or within 80 bytes after an access key id.
pub(super) fn find_aws_secret_keys(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let first = out.len();
    let push = |s: usize, e: usize, out: &mut Vec<Span>| {
        let clean = !matches!(at(b, e), b'=') && !is_alnum(before(b, s));
        if clean && aws_secret_shape(&b[s..e]) {
            out.push(Span { start: s, end: e });
            true
        } else {
            false
        }
    };
    for m in AWS_SECRET_NAME.find_iter(b) {
        let mut j = m.end();
        while j < m.end() + 32 && (token_byte(at(b, j)) || at(b, j) == b'.') {
            j += 1;
        }
        let name_end = j;
        while j < name_end + 16
            && matches!(
                at(b, j),
                b' ' | b'\t' | b'"' | b'\'' | b'`' | b':' | b'=' | b'>' | b'\\' | b','
            )
        {
            j += 1;
        }
        if j > name_end {
            push(j, base64_run(b, j), out);
        }
    }
    for key in aws_access_keys(b) {
        let mut j = key.end;
        let limit = (key.end + 80).min(b.len());
        while j < limit {
            if is_alnum(at(b, j)) || matches!(at(b, j), b'/' | b'+') {
                let e = base64_run(b, j);
                if e - j == 40 && push(j, e, out) {
                    break;
                }
                j = e;
            } else {
                j += 1;
            }
        }
    }
    // A key both named and next to its access key id is found twice.
    out[first..].sort_unstable();
    let mut kept = first;
    for k in first..out.len() {
        if kept == first || out[kept - 1] != out[k] {
            out[kept] = out[k];
            kept += 1;
        }
    }
    out.truncate(kept);
}

/// Finds provider-prefixed API keys (OpenAI, Anthropic, GitHub, Slack, Stripe, Google, GitLab,
/// Hugging Face, npm, SendGrid; Twilio `SK` + 32 hex within 200 bytes after the word twilio).
/// The key must stand alone (no token byte on either side) and not be a placeholder.
pub(super) fn find_api_keys(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    for m in API_KEY.find_iter(b) {
        let (s, e) = (m.start(), m.end());
        if token_byte(before(b, s)) || token_byte(at(b, e)) {
            continue;
        }
        let body_start = prefix_len(&b[s..e]);
        if !placeholder(&b[s + body_start..e]) {
            out.push(Span { start: s, end: e });
        }
    }
    let mut resume = 0;
    for m in TWILIO.find_iter(b) {
        let from = m.end().max(resume);
        let to = (m.end() + 200).min(b.len());
        if from >= to {
            continue;
        }
        let window = &b[from..to];
        for p in memmem::find_iter(window, b"SK") {
            let s = from + p;
            let e = s + 34;
            let hex = b
                .get(s + 2..e)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if hex
                && !token_byte(before(b, s))
                && !token_byte(at(b, e))
                && !placeholder(&b[s + 2..e])
            {
                out.push(Span { start: s, end: e });
            }
        }
        resume = m.end() + 200;
    }
}

/// The length of a matched key's provider prefix (up to the last `-`/`_`/`.` of the prefix).
fn prefix_len(key: &[u8]) -> usize {
    const PREFIXES: &[&[u8]] = &[
        b"sk-ant-",
        b"sk-proj-",
        b"sk-svcacct-",
        b"sk-admin-",
        b"github_pat_",
        b"sk_live_",
        b"rk_live_",
        b"sk_test_",
        b"rk_test_",
        b"glpat-",
        b"sk-",
        b"ghp_",
        b"gho_",
        b"ghu_",
        b"ghs_",
        b"ghr_",
        b"xoxb-",
        b"xoxp-",
        b"xoxa-",
        b"xoxr-",
        b"AIza",
        b"hf_",
        b"npm_",
        b"SG.",
    ];
    PREFIXES
        .iter()
        .find(|p| key.starts_with(p))
        .map_or(0, |p| p.len())
}

/// Whether `c` is a base64url character.
fn b64url_byte(c: u8) -> bool {
    token_byte(c)
}

/// Decodes unpadded base64url (standard `+`/`/` also accepted); `None` if malformed.
fn decode_base64url(s: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        let bits = chunk.len() * 6;
        acc <<= 24 - bits;
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..1 + bits / 8]);
    }
    Some(out)
}

/// The JSON object a base64url segment decodes to.
fn json_object(segment: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_slice(&decode_base64url(segment)?).ok()
}

/// Longest header or payload segment considered (a JWT in a cookie is well below this).
const MAX_SEGMENT: usize = 16 * 1024;

/// Finds JSON Web Tokens `header.payload.signature`: the header (which must name an `alg`) and
/// the payload decode to JSON objects; the signature is base64url of 16+ chars, or empty for
/// `alg: none`. Every byte is read a bounded number of times: a rejected candidate is skipped
/// whole.
pub(super) fn find_jwts(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let finder = memmem::Finder::new(b"eyJ");
    let mut i = 0;
    while let Some(p) = finder.find(&b[i..]) {
        let start = i + p;
        let seg_end = |s: usize| {
            let mut j = s;
            while b64url_byte(at(b, j)) {
                j += 1;
            }
            j
        };
        let header_end = seg_end(start);
        i = header_end;
        if b64url_byte(before(b, start)) || before(b, start) == b'.' || at(b, header_end) != b'.' {
            continue;
        }
        let payload_end = seg_end(header_end + 1);
        if at(b, payload_end) != b'.' || payload_end == header_end + 1 {
            i = payload_end;
            continue;
        }
        let sig_end = seg_end(payload_end + 1);
        i = sig_end;
        if header_end - start > MAX_SEGMENT
            || payload_end - header_end > MAX_SEGMENT
            || at(b, sig_end) == b'.'
        {
            continue;
        }
        let Some(header) = json_object(&b[start..header_end]) else {
            continue;
        };
        let Some(alg) = header.get("alg").and_then(|a| a.as_str()) else {
            continue;
        };
        if json_object(&b[header_end + 1..payload_end]).is_none() {
            continue;
        }
        let sig = sig_end - payload_end - 1;
        let sig_ok = if alg.eq_ignore_ascii_case("none") {
            sig == 0 || sig >= 16
        } else {
            sig >= 16
        };
        if sig_ok {
            let end = if sig == 0 { payload_end + 1 } else { sig_end };
            out.push(Span { start, end });
        }
    }
}
