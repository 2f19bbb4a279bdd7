//! Built-in PII and secret detectors: the rule kinds a policy file names (`email`, `card`, …).
//!
//! Every detector is a cheap prefilter (memchr for a byte, a digit scan, or one `regex` whose
//! literal prefixes it searches for) followed by structural checks on each candidate (checksums,
//! length tables, JSON decoding). Each candidate is examined once and the scan resumes after it,
//! so every detector is linear in the text. Spans are byte offsets on char boundaries: all the
//! detectors anchor on ASCII bytes and never end inside a multi-byte char.
//!
//! Decisions the issue left open (each also in [`Detector::describe`]):
//! - email: a dotless domain (`user@localhost`) is not an address; URL userinfo is not either
//!   (its password is a `secret_value`).
//! - ssn: 9 bare digits count only within 40 bytes after "SSN" or "social security".
//! - card: Maestro is 50 and 56-69 not taken by another brand, 13-19 digits; well-known test
//!   numbers (4111 1111 1111 1111) are cards: the shape is what leaks.
//! - aws_access_key / aws_secret_key: AWS's documented example keys (`…EXAMPLE`,
//!   `…EXAMPLEKEY`) are test data and never match.
//! - jwt: an empty signature only with `alg: none`.
//! - ipv4: loopback 127/8, 0.0.0.0 and 255.x are not personal data; private ranges match.
//! - api_key: Stripe `sk_test_`/`rk_test_` keys match (they open the account's test data);
//!   publishable `pk_` keys do not; Twilio `SK` + 32 hex only after the word "twilio".
//! - secret_value: values with spaces, single-case words and plain numbers are not secrets.

mod contact;
mod network;
mod numbers;
mod pem;
mod scan;
mod secret_value;
mod secrets;
#[cfg(test)]
mod tests;

pub use secret_value::secret_field;

/// A built-in detector: each is a documented rule kind of the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A US social security number.
    Ssn,
    /// A payment card number.
    Card,
    /// An international bank account number.
    Iban,
    /// An AWS access key id.
    AwsAccessKey,
    /// An AWS secret access key.
    AwsSecretKey,
    /// A PEM private key block.
    PrivateKey,
    /// A JSON Web Token.
    Jwt,
    /// An IPv4 address.
    Ipv4,
    /// A provider-prefixed API key.
    ApiKey,
    /// The value of a secret-ish field (`password=…`, `"token": "…"`).
    SecretValue,
}

impl Detector {
    /// Every detector, in declaration order.
    pub const ALL: &'static [Detector] = &[
        Detector::Email,
        Detector::Phone,
        Detector::Ssn,
        Detector::Card,
        Detector::Iban,
        Detector::AwsAccessKey,
        Detector::AwsSecretKey,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::Ipv4,
        Detector::ApiKey,
        Detector::SecretValue,
    ];

    /// Wire name: "email", "phone", "ssn", "card", "iban", "aws_access_key", "aws_secret_key",
    /// "private_key", "jwt", "ipv4", "api_key", "secret_value".
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Ssn => "ssn",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::AwsSecretKey => "aws_secret_key",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::Ipv4 => "ipv4",
            Detector::ApiKey => "api_key",
            Detector::SecretValue => "secret_value",
        }
    }

    /// The detector with this wire name.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// One sentence for docs and `--help`: what it finds and what it deliberately does not.
    pub fn describe(self) -> &'static str {
        match self {
            Detector::Email => {
                "E-mail addresses local@domain.tld (sub-domains, +tags); not dotless hosts such as \
                 user@localhost, @handles, URL userinfo, npm pins such as pkg@1.2.3 or asset names such as \
                 icon@2x.png."
            }
            Detector::Phone => {
                "Phone numbers: +country-code numbers (E.164, spaced, dashed, with (0)), NANP \
                 (415) 555-2671 / 415-555-2671 and 0-prefixed national numbers in groups; not bare \
                 digit runs without a +, dates, times, versions, IP addresses or card numbers."
            }
            Detector::Ssn => {
                "US social security numbers AAA-GG-SSSS (dashes or spaces) with valid area, group and \
                 serial; 9 bare digits only right after the words SSN or social security."
            }
            Detector::Card => {
                "Payment card numbers: 13-19 digits (plain or in groups of spaces or dashes), \
                 Luhn-valid, with a known IIN and a length that fits the brand (Visa, Mastercard, \
                 Amex, Discover, Diners, JCB, UnionPay, Maestro); not Luhn-invalid or unbranded numbers."
            }
            Detector::Iban => {
                "IBANs (ISO 13616): country code, check digits and BBAN of the country's length, \
                 mod-97 valid, compact or in groups of 4; upper case only."
            }
            Detector::AwsAccessKey => {
                "AWS access key ids (AKIA, ASIA, AGPA, AIDA, AROA, ANPA, ANVA, AIPA + 16 base32 \
                 chars); not AWS's documented example keys ending in EXAMPLE."
            }
            Detector::AwsSecretKey => {
                "AWS secret access keys: 40 base64 chars after an aws_secret/SecretAccessKey-style \
                 name or right after an access key id; not a bare 40-char string such as a git SHA."
            }
            Detector::PrivateKey => {
                "PEM private key blocks (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP), BEGIN to END as one \
                 span, also with JSON-escaped newlines, and truncated blocks up to the end of their \
                 base64; not public keys or certificates."
            }
            Detector::Jwt => {
                "JSON Web Tokens: three base64url segments whose header (with \"alg\") and payload \
                 decode to JSON objects; an empty signature only with alg \"none\"."
            }
            Detector::Ipv4 => {
                "IPv4 addresses (octets 0-255, no leading zeros); not loopback 127.x, 0.0.0.0, \
                 255.x masks, parts of longer dotted numbers, or versions and OIDs named as such."
            }
            Detector::ApiKey => {
                "Provider-prefixed API keys (OpenAI, Anthropic, GitHub, Slack, Stripe live and test \
                 secret keys, Google, GitLab, Hugging Face, npm, SendGrid, Twilio near the word \
                 twilio) of the provider's length; not placeholders such as sk-xxxx or short words."
            }
            Detector::SecretValue => {
                "The value of a secret-ish field (password, secret, token, api_key, private_key, \
                 credential, auth...) written key=value, key: value or \"key\": \"value\", when it \
                 looks like a real secret, and URL passwords (scheme://user:pass@host); not \
                 placeholders, ${VARS}, code expressions, numbers, words or values with spaces."
            }
        }
    }
}

/// A match: byte offsets into the text, both on char boundaries, start < end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// Offset of the first byte of the match.
    pub start: usize,
    /// Offset one past the last byte of the match.
    pub end: usize,
}

/// Append every match of `detector` in `text` to `out` (any order, may overlap).
pub fn find(detector: Detector, text: &str, out: &mut Vec<Span>) {
    match detector {
        Detector::Email => contact::find_emails(text, out),
        Detector::Phone => contact::find_phones(text, out),
        Detector::Ssn => numbers::find_ssns(text, out),
        Detector::Card => numbers::find_cards(text, out),
        Detector::Iban => numbers::find_ibans(text, out),
        Detector::AwsAccessKey => secrets::find_aws_access_keys(text, out),
        Detector::AwsSecretKey => secrets::find_aws_secret_keys(text, out),
        Detector::PrivateKey => pem::find_private_keys(text, out),
        Detector::Jwt => secrets::find_jwts(text, out),
        Detector::Ipv4 => network::find_ipv4s(text, out),
        Detector::ApiKey => secrets::find_api_keys(text, out),
        Detector::SecretValue => secret_value::find_secret_values(text, out),
    }
}
