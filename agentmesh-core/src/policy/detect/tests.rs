//! Unit tests of the detectors: one positive and the tricky negatives per kind, the
//! placeholder rule, adversarial inputs and a proptest over arbitrary UTF-8.

use proptest::prelude::*;

use super::{find, secret_field, Detector, Span};

/// The matched substrings of `detector` in `text`.
fn hits(detector: Detector, text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    find(detector, text, &mut spans);
    spans.sort();
    spans.iter().map(|s| &text[s.start..s.end]).collect()
}

#[test]
fn names_round_trip() {
    for &d in Detector::ALL {
        assert_eq!(Detector::from_name(d.name()), Some(d));
        assert!(!d.describe().is_empty());
    }
    assert_eq!(Detector::ALL.len(), 12);
    assert_eq!(Detector::from_name("Email"), None);
}

#[test]
fn email() {
    let d = Detector::Email;
    assert_eq!(
        hits(d, "mail jane.doe+news@mail.example.org."),
        ["jane.doe+news@mail.example.org"]
    );
    assert!(hits(d, "user@localhost, @alice, logo@2x.png, lodash@4.17.21").is_empty());
    assert!(hits(
        d,
        "https://ghp_tok@github.com/x and redis://app:s3cret@cache.example.com"
    )
    .is_empty());
}

#[test]
fn phone() {
    let d = Detector::Phone;
    for p in [
        "+14155552671",
        "+44 20 7946 0958",
        "(415) 555-2671",
        "415-555-2671",
        "+49 (0)30 123456",
        "+33 1 23 45 67 89",
        "+91 98765 43210",
        "020 7946 0958",
        "1-800-555-0199",
    ] {
        assert_eq!(hits(d, &format!("call {p} now")), [p], "{p}");
    }
    for n in [
        "2024-01-15",
        "10:30:45",
        "192.168.1.20",
        "order 4155552671",
        "v1.2.3",
        "4111 1111 1111 1111",
        "123-45-6789",
        "550e8400-e29b-41d4-a716-446655440000",
        "0-306-40615-2",
        "+15 000 000",
    ] {
        assert!(hits(d, n).is_empty(), "{n}");
    }
}

#[test]
fn ssn() {
    let d = Detector::Ssn;
    assert_eq!(
        hits(d, "SSN 219-09-9999 and 219 09 9999"),
        ["219-09-9999", "219 09 9999"]
    );
    assert_eq!(hits(d, "ssn: 219099999"), ["219099999"]);
    for n in [
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "219-00-9999",
        "219-09-0000",
        "id 219099999",
        "219-09-99990",
    ] {
        assert!(hits(d, n).is_empty(), "{n}");
    }
}

#[test]
fn card() {
    let d = Detector::Card;
    assert_eq!(
        hits(d, "card 4111 1111 1111 1111 cvv 123"),
        ["4111 1111 1111 1111"]
    );
    assert_eq!(hits(d, "4111 1111 1111 1111 123"), ["4111 1111 1111 1111"]);
    assert_eq!(hits(d, "amex 3782-822463-10005"), ["3782-822463-10005"]);
    assert_eq!(hits(d, "5555555555554444"), ["5555555555554444"]);
    assert!(hits(
        d,
        "4111 1111 1111 1112, 1234567812345670, 4111-1111 1111-1111"
    )
    .is_empty());
}

#[test]
fn iban() {
    let d = Detector::Iban;
    assert_eq!(
        hits(d, "IBAN DE89 3704 0044 0532 0130 00."),
        ["DE89 3704 0044 0532 0130 00"]
    );
    assert_eq!(
        hits(d, "to GB82WEST12345698765432"),
        ["GB82WEST12345698765432"]
    );
    assert!(hits(d, "DE89 3704 0044 0532 0130 01 and GB82WEST1234569876543").is_empty());
}

#[test]
fn aws_keys() {
    let text = "aws_access_key_id = AKIAZ3MSJV4WWNKWW5FG\naws_secret_access_key = 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";
    assert_eq!(hits(Detector::AwsAccessKey, text), ["AKIAZ3MSJV4WWNKWW5FG"]);
    assert_eq!(
        hits(Detector::AwsSecretKey, text),
        ["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"]
    );
    assert!(hits(Detector::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE").is_empty());
    let sha = "aws_secret = da39a3ee5e6b4b0d3255bfef95601890afd80709";
    assert!(hits(Detector::AwsSecretKey, sha).is_empty());
}

#[test]
fn private_key_whole_block() {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
    let pem =
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n{body}\nAbCd==\n-----END PRIVATE KEY-----");
    let text = format!("key:\n{pem}\nrest");
    assert_eq!(hits(Detector::PrivateKey, &text), [pem.as_str()]);
    let escaped = pem.replace('\n', "\\n");
    let json = format!("{{\"key\": \"{escaped}\"}}");
    assert_eq!(hits(Detector::PrivateKey, &json), [escaped.as_str()]);
    let truncated = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n{body}");
    assert_eq!(
        hits(Detector::PrivateKey, &format!("{truncated}\" and more")),
        [truncated.as_str()]
    );
    let public = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----");
    assert!(hits(Detector::PrivateKey, &public).is_empty());
}

#[test]
fn jwt() {
    let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_eq!(hits(Detector::Jwt, &format!("Bearer {t}")), [t]);
    let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    assert_eq!(hits(Detector::Jwt, none), [none]);
    assert!(hits(Detector::Jwt, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.").is_empty());
    assert!(hits(
        Detector::Jwt,
        "eyJub3QiOiJqd3QifQ.eyJzdWIiOiJ4In0.dozjgNryP4J3jVmNHl0w5N"
    )
    .is_empty());
}

#[test]
fn ipv4() {
    let d = Detector::Ipv4;
    assert_eq!(
        hits(d, "from 203.0.113.7:443 and 10.0.0.12/8"),
        ["203.0.113.7", "10.0.0.12"]
    );
    for n in [
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.0",
        "v1.2.3.4",
        "version 10.0.19041.1",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.4-beta",
        "01.2.3.4",
        "OID 2.5.4.3",
    ] {
        assert!(hits(d, n).is_empty(), "{n}");
    }
}

#[test]
fn api_key() {
    let d = Detector::ApiKey;
    let k = "ghp_R8x2Lq7Vz0Tn4Ks9Wm3Yb6Hc1Jd5Fg8Pa2Qe";
    assert_eq!(hits(d, &format!("token {k}.")), [k]);
    for n in [
        "sk-learn",
        "sk-1",
        "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "task-R8x2Lq7Vz0Tn4Ks9Wm3Yb6Hc1Jd5Fg8Pa2Qe",
    ] {
        assert!(hits(d, n).is_empty(), "{n}");
    }
    let twilio = "TWILIO_API_KEY=SK0123456789abcdef0123456789abcdef";
    assert_eq!(hits(d, twilio), ["SK0123456789abcdef0123456789abcdef"]);
    assert!(hits(d, "id SK0123456789abcdef0123456789abcdef").is_empty());
}

#[test]
fn secret_value() {
    let d = Detector::SecretValue;
    assert_eq!(
        hits(d, "DB_PASSWORD=\"Tr0ub4dor&3x\" other"),
        ["Tr0ub4dor&3x"]
    );
    assert_eq!(
        hits(d, r#"{\"client_secret\": \"q8Zr2LmN5vX0\"}"#),
        ["q8Zr2LmN5vX0"]
    );
    assert_eq!(
        hits(d, "Authorization: Bearer Zm9vYmFyYmF6cXV4MTIz"),
        ["Zm9vYmFyYmF6cXV4MTIz"]
    );
    for n in [
        "password: changeme",
        "api_key = YOUR_API_KEY",
        "token: <token>",
        "secret=${SECRET}",
        "password=\"********\"",
        "\"password\": null",
        "max_tokens=4096",
        "password_file=/run/secrets/db",
        "token = os.environ[\"TOKEN\"]",
        "auth: true",
        "password == other_password1",
    ] {
        assert!(hits(d, n).is_empty(), "{n}");
    }
    assert_eq!(
        hits(
            d,
            "DATABASE_URL=postgres://app:S3cr3t!x@db.example.com:5432/app"
        ),
        ["S3cr3t!x"]
    );
    assert!(hits(
        d,
        "redis://:${REDIS_PASS}@cache:6379 https://example.com:8080/x http://bob@example.com"
    )
    .is_empty());
    assert!(secret_field("apiKey", "q8Zr2LmN5vX0"));
    assert!(secret_field("Authorization", "Bearer Zm9vYmFyYmF6cXV4MTIz"));
    for v in [
        "changeme",
        "xxxx",
        "<your-key>",
        "${VAR}",
        "***",
        "null",
        "true",
        "12345678",
    ] {
        assert!(!secret_field("password", v), "{v}");
    }
    assert!(!secret_field("username", "q8Zr2LmN5vX0"));
}

#[test]
fn placeholders_are_not_rematched() {
    let text =
        "[REDACTED:email] [REDACTED:phone] password=[REDACTED:secret_value] [REDACTED:api_key]";
    for &d in Detector::ALL {
        assert!(hits(d, text).is_empty(), "{}", d.name());
    }
}

/// Inputs built to make a careless scanner quadratic; they must finish (the benchmark times them).
#[test]
fn adversarial_inputs_finish() {
    let inputs = [
        "7".repeat(50_000),
        "a".repeat(50_000),
        "-----BEGIN PRIVATE KEY-----".repeat(2_000),
        "a.".repeat(25_000),
        "1.".repeat(25_000),
        "+1 ".repeat(300_000),
        "eyJ".repeat(20_000),
        "a@".repeat(25_000),
        "password=".repeat(6_000),
        "4111 ".repeat(10_000),
    ];
    for text in &inputs {
        for &d in Detector::ALL {
            let mut spans = Vec::new();
            find(d, text, &mut spans);
            assert_spans_valid(text, &spans);
        }
    }
}

fn assert_spans_valid(text: &str, spans: &[Span]) {
    for s in spans {
        assert!(s.start < s.end && s.end <= text.len(), "{s:?}");
        assert!(
            text.is_char_boundary(s.start) && text.is_char_boundary(s.end),
            "{s:?}"
        );
    }
}

/// Fragments mixing real positives with separators, digits and multi-byte chars.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("4111 1111 1111 1111".to_string()),
        Just("+44 20 7946 0958".to_string()),
        Just("jane@example.com".to_string()),
        Just("219-09-9999".to_string()),
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("203.0.113.7".to_string()),
        Just("AKIAZ3MSJV4WWNKWW5FG".to_string()),
        Just("password=\"Tr0ub4dor&3x\"".to_string()),
        Just("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_string()),
        Just("-----BEGIN PRIVATE KEY-----\\nMIIE".to_string()),
        "[0-9 .:+()\\-@]{1,12}",
        "[a-zA-Z_=\"']{1,8}",
        "[éü😀жЖ€]{1,4}",
    ]
}

proptest! {
    #[test]
    fn spans_are_valid_on_any_text(text in any::<String>()) {
        for &d in Detector::ALL {
            let mut spans = Vec::new();
            find(d, &text, &mut spans);
            assert_spans_valid(&text, &spans);
        }
    }

    #[test]
    fn spans_are_valid_around_positives(parts in proptest::collection::vec(fragment(), 0..12)) {
        let text = parts.concat();
        for &d in Detector::ALL {
            let mut spans = Vec::new();
            find(d, &text, &mut spans);
            assert_spans_valid(&text, &spans);
        }
    }
}
