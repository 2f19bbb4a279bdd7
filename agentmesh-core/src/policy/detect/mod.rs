//! TEMPORARY local stand-in (never committed): the detect branch replaces this file.
#![allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Email,
    Phone,
    Ssn,
    Card,
    Iban,
    AwsAccessKey,
    AwsSecretKey,
    PrivateKey,
    Jwt,
    Ipv4,
    ApiKey,
    SecretValue,
}
impl Detector {
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
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.iter().copied().find(|d| d.name() == name)
    }
    pub fn describe(self) -> &'static str {
        ""
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}
pub fn find(detector: Detector, text: &str, out: &mut Vec<Span>) {
    use std::sync::OnceLock;
    static E: OnceLock<regex::Regex> = OnceLock::new();
    static S: OnceLock<regex::Regex> = OnceLock::new();
    let re = match detector {
        Detector::Email => E.get_or_init(|| {
            regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
                .unwrap()
        }),
        Detector::Ssn => S.get_or_init(|| regex::Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").unwrap()),
        _ => return,
    };
    out.extend(re.find_iter(text).map(|m| Span {
        start: m.start(),
        end: m.end(),
    }));
}
pub fn secret_field(key: &str, value: &str) -> bool {
    key.to_ascii_lowercase().contains("password") && value.len() >= 8
}
