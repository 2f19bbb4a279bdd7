#!/usr/bin/env python3
"""Writes corpus.jsonl: the labelled PII/secret corpus of tests/it/pii_corpus.rs.

Hand-written contexts (prose, JSON, logs, code, CSV, e-mail, chat) filled with made-up values:
reserved domains, 555 / Ofcom drama numbers, checksum-valid fake cards and IBANs computed here,
random keys from a fixed seed. Labels are written here from how each value was made, never by
running the detectors. Re-run: python3 make_corpus.py > corpus.jsonl
"""
import base64, hashlib, json, random, string, uuid

R = random.Random(20261202)
records = []

def rec(text, *spans):
    records.append({"text": text, "spans": [{"kind": k, "text": t} for k, t in spans]})

def pick(xs):
    return R.choice(xs)

def rand(alphabet, n):
    return "".join(R.choice(alphabet) for _ in range(n))

UP, LO, DG = string.ascii_uppercase, string.ascii_lowercase, string.digits
AN = UP + LO + DG
B64 = AN + "+/"
B64URL = AN + "-_"

FIRST = ["jane", "omar", "li", "sofia", "kwame", "ines", "pavel", "mei", "arjun", "lucia", "tom", "ada", "noor", "yuki", "erik"]
LAST = ["doe", "haddad", "wei", "rossi", "mensah", "garcia", "novak", "chen", "patel", "moreno", "baker", "lovelace", "aziz", "tanaka", "berg"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "eu.corp.example.org", "dev.example.net", "acme.test", "shop.example", "billing.example.com"]

# ---------------------------------------------------------------- email
def email():
    f, l = pick(FIRST), pick(LAST)
    local = pick([f"{f}.{l}", f"{f}{R.randint(1, 99)}", f"{f[0]}{l}", f"{f}+{pick(['news', 'billing', 'test', 'git'])}", f"{f}_{l}", f"{l}-{f}", f"{f}.{l}+{R.randint(1, 9)}"])
    return f"{local}@{pick(DOMAINS)}"

EMAIL_T = [
    "Please contact {v} if you have questions about the invoice.",
    '{{"user": {{"id": 4821, "email": "{v}", "verified": true}}}}',
    "2026-11-30T08:12:44Z INFO auth: login succeeded for {v} from web",
    "From: Support <{v}>\nTo: team@example.org\nSubject: Re: outage",
    "id,name,email\n17,{n},{v}\n",
    "[10:42] <mira> ping me at {v} when the build is green",
    "    send_mail(to=\"{v}\", subject=\"Welcome\")",
    "reply-to: {v}; cc: nobody",
    "Mailto link: <a href=\"mailto:{v}\">write to us</a>",
    "The account owner ({v}) asked for a data export.",
]
for i in range(46):
    v = email()
    t = EMAIL_T[i % len(EMAIL_T)]
    text = t.format(v=v, n=pick(FIRST).title())
    if "team@example.org" in text:
        rec(text, ("email", v), ("email", "team@example.org"))
    else:
        rec(text, ("email", v))

# ---------------------------------------------------------------- phone
def nanp():
    a = pick(["415", "212", "646", "303", "617", "206", "312", "720"])
    x = "555"
    line = f"{R.randint(100, 199):04d}"
    return pick([f"({a}) {x}-{line}", f"{a}-{x}-{line}", f"+1{a}{x}{line}", f"+1 {a} {x} {line}", f"{a}.{x}.{line}", f"1-{a}-{x}-{line}", f"+1 ({a}) {x}-{line}"])

def intl():
    return pick([
        f"+44 20 7946 0{R.randint(100, 999)}", f"020 7946 0{R.randint(100, 999)}", f"+44 113 496 0{R.randint(100, 999)}",
        f"+49 (0)30 {R.randint(100000, 999999)}", f"+49 30 {R.randint(1000000, 9999999)}", f"030 {R.randint(100000, 999999)}",
        f"+33 1 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
        f"01 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
        f"+91 98765 {R.randint(10000, 99999)}", f"+61 2 5550 {R.randint(1000, 9999)}", f"+81 3-5550-{R.randint(1000, 9999)}",
        f"+34 91 555 {R.randint(10, 99)} {R.randint(10, 99)}", f"+31 20 555 {R.randint(1000, 9999)}", f"+4420794600{R.randint(10, 99)}",
    ])

PHONE_T = [
    "Call us at {v} between 9am and 5pm.",
    '{{"name": "{n}", "phone": "{v}", "country": "US"}}',
    "2026-12-01 14:03:11 WARN sms: delivery to {v} failed (code 30007)",
    "Best regards,\n{n}\nMobile: {v}\n",
    "customer_id,phone\n88123,{v}\n",
    "<lena> my new number is {v}, save it",
    "    contact = Contact(phone=\"{v}\")",
    "Tel. {v} / Fax on request",
    "If the line is busy, dial {v} instead.",
]
for i in range(46):
    v = nanp() if i % 2 == 0 else intl()
    rec(PHONE_T[i % len(PHONE_T)].format(v=v, n=pick(FIRST).title()), ("phone", v))

# ---------------------------------------------------------------- ssn
def ssn(sep="-"):
    while True:
        a = R.randint(1, 899)
        if a != 666:
            break
    return f"{a:03d}{sep}{R.randint(1, 99):02d}{sep}{R.randint(1, 9999):04d}"

SSN_T = [
    "Employee SSN: {v}",
    '{{"applicant": {{"name": "{n}", "ssn": "{v}"}}}}',
    "Her social security number is {v}, please verify.",
    "name,dob,ssn\n{n},1984-03-12,{v}\n",
    "W-2 form: employee's SSN {v}, wages 52,300.00",
    "    tax_id = \"{v}\"  # US SSN",
    "<ops> can you check record {v} in the payroll db?",
    "Verified identity with SSN ending -- full: {v}.",
]
for i in range(44):
    sep = " " if i % 7 == 3 else "-"
    v = ssn(sep)
    rec(SSN_T[i % len(SSN_T)].format(v=v, n=pick(FIRST).title()), ("ssn", v))
for i in range(4):
    v = ssn("")
    rec(pick(["SSN {v} on file", "social security no. {v}", "ssn={v}"]).format(v=v), ("ssn", v))

# ---------------------------------------------------------------- card
def luhn_complete(prefix, length):
    body = prefix + "".join(R.choice(DG) for _ in range(length - len(prefix) - 1))
    for d in DG:
        s = body + d
        total = 0
        for i, c in enumerate(reversed(s)):
            n = int(c)
            if i % 2 == 1:
                n *= 2
                if n > 9:
                    n -= 9
            total += n
        if total % 10 == 0:
            return s
    raise AssertionError

BRANDS = [("4", 16), ("4", 13), ("51", 16), ("53", 16), ("55", 16), ("2221", 16), ("2720", 16), ("2500", 16),
          ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("644", 16), ("36", 14), ("3528", 16), ("3589", 16),
          ("62", 16), ("62", 19), ("4", 19), ("50", 16), ("56", 16)]

def group(num, sep):
    if len(num) == 15:
        parts = [num[:4], num[4:10], num[10:]]
    elif len(num) == 14:
        parts = [num[:4], num[4:10], num[10:]]
    else:
        parts = [num[i:i + 4] for i in range(0, len(num), 4)]
    return sep.join(parts)

CARD_T = [
    "Charged card {v} for $42.10.",
    '{{"payment": {{"card_number": "{v}", "exp": "09/28", "cvc": "123"}}}}',
    "2026-10-04 09:55:02 ERROR billing: declined card={v} reason=insufficient_funds",
    "order,card,amount\n10442,{v},19.99\n",
    "<sam> use the corporate card {v} exp 11/27",
    "    pay(card=\"{v}\", amount=Decimal(\"10.00\"))",
    "Your card ending in {v} has been updated.",
    "PAN: {v}\nName on card: {n}",
]
for i in range(46):
    prefix, length = BRANDS[i % len(BRANDS)]
    num = luhn_complete(prefix, length)
    sep = ["", " ", "-"][i % 3]
    v = num if sep == "" or length == 19 and sep == "" else group(num, sep)
    rec(CARD_T[i % len(CARD_T)].format(v=v, n=pick(FIRST).title()), ("card", v))

# ---------------------------------------------------------------- iban
IBAN_LEN = {"DE": (22, "8n10n"), "GB": (22, "4a14n"), "FR": (27, "23n"), "NL": (18, "4a10n"), "ES": (24, "20n"),
            "IT": (27, "1a22n"), "BE": (16, "12n"), "CH": (21, "17n"), "AT": (20, "16n"), "PL": (28, "24n"),
            "SE": (24, "20n"), "NO": (15, "11n"), "IE": (22, "4a14n"), "PT": (25, "21n"), "DK": (18, "14n")}

def iban(cc):
    length, shape = IBAN_LEN[cc]
    bban = ""
    for part in shape.replace("n", "n ").replace("a", "a ").split():
        n, kind = int(part[:-1]), part[-1]
        bban += "".join(R.choice(UP if kind == "a" else DG) for _ in range(n))
    moved = bban + cc + "00"
    num = int("".join(str(int(c, 36)) for c in moved))
    check = 98 - num % 97
    out = f"{cc}{check:02d}{bban}"
    assert len(out) == length
    return out

IBAN_T = [
    "Please transfer the deposit to IBAN {v} by Friday.",
    '{{"beneficiary": "{n}", "iban": "{v}", "bic": "DEUTDEFF"}}',
    "2026-09-12 11:20:40 INFO payout: sent 120.00 EUR to {v}",
    "name;iban;amount\n{n};{v};250,00\n",
    "<petra> my account: {v} (no spaces needed)",
    "Kontoinhaber: {n}, IBAN: {v}",
    "    transfer(to_iban=\"{v}\", cents=9900)",
]
for i in range(46):
    v = iban(list(IBAN_LEN)[i % len(IBAN_LEN)])
    if i % 2 == 0:
        v = " ".join(v[j:j + 4] for j in range(0, len(v), 4))
    rec(IBAN_T[i % len(IBAN_T)].format(v=v, n=pick(FIRST).title()), ("iban", v))

# ---------------------------------------------------------------- aws keys
B32 = UP + "234567"
def aws_access():
    return pick(["AKIA", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"]) + rand(B32, 16)

def aws_secret():
    while True:
        s = rand(B64, 40)
        if any(c in UP for c in s) and any(c in LO for c in s) and any(c in DG for c in s):
            return s

for i in range(56):
    a, s = aws_access(), aws_secret()
    form = i % 8
    if form == 0:
        rec(f"[default]\naws_access_key_id = {a}\naws_secret_access_key = {s}\nregion = eu-west-1\n", ("aws_access_key", a), ("aws_secret_key", s), ("secret_value", s))
    elif form == 1:
        rec(f'{{"AccessKeyId": "{a}", "SecretAccessKey": "{s}", "SessionToken": null}}', ("aws_access_key", a), ("aws_secret_key", s), ("secret_value", s))
    elif form == 2:
        rec(f"export AWS_ACCESS_KEY_ID={a}\nexport AWS_SECRET_ACCESS_KEY={s}\n", ("aws_access_key", a), ("aws_secret_key", s), ("secret_value", s))
    elif form == 3:
        rec(f"User name,Access key ID,Secret access key\nci-deploy,{a},{s}\n", ("aws_access_key", a), ("aws_secret_key", s))
    elif form == 4:
        rec(f"2026-08-01 12:00:00 DEBUG boto: using credentials {a} from env", ("aws_access_key", a))
    elif form == 5:
        rec(f"<dev> oops I pasted my key {a} in the channel, rotating now", ("aws_access_key", a))
    elif form == 6:
        rec(f"    s3 = boto3.client('s3', aws_access_key_id='{a}', aws_secret_access_key='{s}')", ("aws_access_key", a), ("aws_secret_key", s), ("secret_value", s))
    else:
        rec(f"<Credentials><AccessKeyId>{a}</AccessKeyId><SecretAccessKey>{s}</SecretAccessKey></Credentials>", ("aws_access_key", a), ("aws_secret_key", s))

# ---------------------------------------------------------------- private keys
LABELS = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"]
def pem(label, lines=5, nl="\n"):
    width = 70 if "OPENSSH" in label else 64
    body = [("MII" if "OPENSSH" not in label else "b3Bl") + rand(B64, width - 3 - (1 if "OPENSSH" in label else 0))]
    body += [rand(B64, width) for _ in range(lines - 2)] + [rand(B64, R.randint(8, 40)) + "=="]
    return f"-----BEGIN {label}-----{nl}" + nl.join(body) + f"{nl}-----END {label}-----"

for i in range(44):
    label = LABELS[i % len(LABELS)]
    form = i % 6
    if form == 0:
        k = pem(label)
        rec(f"Here is the deploy key, keep it safe:\n\n{k}\n\nThanks!", ("private_key", k))
    elif form == 1:
        k = pem(label, nl="\\n")
        rec(f'{{"type": "service_account", "project_id": "demo-123", "key_pem": "{k}\\n", "client_email": "svc@demo-123.example.com"}}', ("private_key", k), ("email", "svc@demo-123.example.com"))
    elif form == 2:
        k = pem(label, nl="\r\n")
        rec(f"tls:\r\n  key: |\r\n{k}\r\n", ("private_key", k))
    elif form == 3:
        full = pem(label, lines=6)
        k = full.split("\n")
        trunc = "\n".join(k[:4])
        rec(f"error: could not parse key (truncated upload):\n{trunc}\n", ("private_key", trunc))
    elif form == 4:
        k = pem(label, lines=4)
        rec(f"```\n$ cat ~/.ssh/id_ed25519\n{k}\n```", ("private_key", k))
    else:
        k = pem(label, nl="\\n")
        rec(f'2026-07-07 10:10:10 DEBUG config loaded: {{"signer": "{k}"}}', ("private_key", k))

# ---------------------------------------------------------------- jwt
def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def jwt(alg=None):
    alg = alg or pick(["HS256", "RS256", "ES256", "HS512", "PS256"])
    header = {"alg": alg, "typ": "JWT"} if R.random() < 0.7 else {"typ": "JWT", "alg": alg, "kid": rand(AN, 8)}
    payload = {"sub": str(R.randint(1000, 99999)), "name": pick(FIRST).title(), "iat": 1764600000 + R.randint(0, 10 ** 6)}
    if R.random() < 0.5:
        payload["scope"] = "read write"
    sig = "" if alg == "none" else b64u(bytes(R.randrange(256) for _ in range(pick([32, 64, 48]))))
    return ".".join([b64u(json.dumps(header, separators=(",", ":")).encode()), b64u(json.dumps(payload).encode()), sig])

for i in range(44):
    t = jwt("none" if i % 15 == 7 else None)
    form = i % 7
    if form == 0:
        rec(f"GET /api/v1/me HTTP/1.1\nHost: api.example.com\nAuthorization: Bearer {t}\n", ("jwt", t), ("secret_value", t))
    elif form == 1:
        rec(f'{{"access_token": "{t}", "token_type": "Bearer", "expires_in": 3600}}', ("jwt", t), ("secret_value", t))
    elif form == 2:
        rec(f"2026-06-02 08:00:01 INFO gateway: rejected jwt={t} (expired)", ("jwt", t))
    elif form == 3:
        rec(f"<kai> decoded this one at jwt.io: {t} - looks fine", ("jwt", t))
    elif form == 4:
        rec(f"curl -H 'X-Session: {t}' https://api.example.com/orders", ("jwt", t))
    elif form == 5:
        rec(f"Set-Cookie: session={t}; HttpOnly; Secure", ("jwt", t))
    else:
        rec(f"    headers = {{\"x-id-jwt\": \"{t}\"}}", ("jwt", t))

# ---------------------------------------------------------------- ipv4
def ip():
    return pick([f"192.0.2.{R.randint(1, 254)}", f"198.51.100.{R.randint(1, 254)}", f"203.0.113.{R.randint(1, 254)}",
                 f"10.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}", f"172.16.{R.randint(0, 255)}.{R.randint(1, 254)}",
                 f"192.168.{R.randint(0, 255)}.{R.randint(1, 254)}", f"{R.randint(11, 99)}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(0, 255)}"])

IP_T = [
    "{v} - - [01/Dec/2026:10:00:01 +0000] \"GET /index.html HTTP/1.1\" 200 5120",
    '{{"client_ip": "{v}", "user_agent": "curl/8.5.0"}}',
    "Failed password for root from {v} port 52144 ssh2",
    "Connect to the database at {v}:5432 with the readonly user.",
    "allow {v}/32;",
    "src,dst,bytes\n{v},{w},1200\n",
    "<ana> the office egress IP is {v} now",
    "    upstream = \"http://{v}:8080\"",
]
for i in range(44):
    v, w = ip(), ip()
    t = IP_T[i % len(IP_T)]
    if "{w}" in t:
        rec(t.format(v=v, w=w), ("ipv4", v), ("ipv4", w))
    else:
        rec(t.format(v=v), ("ipv4", v))

# ---------------------------------------------------------------- api keys
def api_key(i):
    kinds = [
        lambda: "sk-proj-" + rand(AN + "-_", 120), lambda: "sk-" + rand(AN, 20) + "T3BlbkFJ" + rand(AN, 20),
        lambda: "sk-ant-api03-" + rand(AN + "-_", 93) + "AA", lambda: "ghp_" + rand(AN, 36), lambda: "gho_" + rand(AN, 36),
        lambda: "ghs_" + rand(AN, 36), lambda: "github_pat_11" + rand(UP + DG, 20) + "_" + rand(AN, 59),
        lambda: "xoxb-" + str(R.randint(10 ** 11, 10 ** 12)) + "-" + str(R.randint(10 ** 12, 10 ** 13)) + "-" + rand(AN, 24),
        lambda: "xoxp-" + str(R.randint(10 ** 11, 10 ** 12)) + "-" + str(R.randint(10 ** 11, 10 ** 12)) + "-" + str(R.randint(10 ** 12, 10 ** 13)) + "-" + rand("0123456789abcdef", 32),
        lambda: "sk_live_" + rand(AN, 99), lambda: "rk_live_" + rand(AN, 99), lambda: "sk_test_" + rand(AN, 99),
        lambda: "AIza" + rand(AN + "-_", 35), lambda: "glpat-" + rand(AN + "-_", 20), lambda: "hf_" + rand(AN, 34),
        lambda: "npm_" + rand(AN, 36), lambda: "SG." + rand(AN + "-_", 22) + "." + rand(AN + "-_", 43),
    ]
    return kinds[i % len(kinds)]()

API_T = [
    ("OPENAI_API_KEY={v}\nMODEL=gpt-4o\n", True),
    ('{{"provider": "acme", "api_key": "{v}", "timeout": 30}}', True),
    ("2026-05-05 17:17:17 ERROR http: 401 for key {v}", False),
    ("<jo> here's the key for staging: {v}", False),
    ("    client = Client(\"{v}\")", False),
    ("git remote set-url origin https://{v}@github.com/acme/app.git", False),
    ("token = \"{v}\"", True),
    ("Run `deploy --key {v}` to publish.", False),
]
for i in range(51):
    v = api_key(i)
    t, sv = API_T[i % len(API_T)]
    spans = [("api_key", v)] + ([("secret_value", v)] if sv else [])
    rec(t.format(v=v), *spans)
for i in range(3):
    v = "SK" + rand("0123456789abcdef", 32)
    rec(pick(["TWILIO_KEY_SID: {v}", "twilio api key {v} (rotate monthly)", "Twilio: using {v}"]).format(v=v), ("api_key", v))

# ---------------------------------------------------------------- secret values
def password():
    return pick([
        lambda: rand(AN, 12) + pick("!#%&*?") + rand(DG, 2),
        lambda: pick(["Tr0ub4dor", "Corr3ct", "Blu3Sky", "N1ghtOwl", "Sunfl0wer"]) + pick("!&#@") + rand(DG, 3),
        lambda: rand(AN, 24),
        lambda: rand("0123456789abcdef", 32),
        lambda: str(uuid.UUID(int=R.getrandbits(128))),
        lambda: rand(AN + "_-", 40),
    ])()

SV_T = [
    'DB_PASSWORD="{v}"', "password: {v}", '{{"client_secret": "{v}", "client_id": "web-app"}}',
    "export GITLAB_TOKEN={v}", "smtp_pass = '{v}'", "--password={v}", "    'secret' => '{v}',",
    "auth_token: \"{v}\"", "redis: {{ host: cache.internal, pass: {v} }}", 'apiKey: "{v}"',
    "Login failed for admin (password={v}) - check caps lock", "Authorization: Basic {v}",
    '{{\\"refresh_token\\": \\"{v}\\"}}', "PRIVATE_KEY_PASSPHRASE={v}", "secret_key := \"{v}\"",
    "jdbc.credentials={v}", "X-Api-Token: {v}",
]
for i in range(51):
    v = password()
    rec(SV_T[i % len(SV_T)].format(v=v), ("secret_value", v))
URL_T = ["DATABASE_URL=postgres://app:{v}@db.example.com:5432/app", "mongodb://admin:{v}@mongo.internal:27017/?authSource=admin",
         "2026-04-04 04:04:04 INFO connecting to amqp://worker:{v}@queue.example.net:5672/", "proxy: http://ci:{v}@proxy.example.org:3128"]
for i in range(8):
    v = password()
    if "@" in v or "/" in v:
        v = rand(AN, 14)
    rec(URL_T[i % len(URL_T)].format(v=v), ("secret_value", v))

# ---------------------------------------------------------------- mixed records
for i in range(12):
    e, p, c = email(), nanp(), group(luhn_complete("4", 16), " ")
    rec(f"Customer {pick(FIRST).title()} <{e}>, phone {p}, paid with {c} from {ip()}.".replace("from ", "from ", 1),
        ("email", e), ("phone", p), ("card", c))
    records[-1]["spans"].append({"kind": "ipv4", "text": records[-1]["text"].rsplit("from ", 1)[1].rstrip(".")})

# ---------------------------------------------------------------- hard negatives
def sha1():
    return hashlib.sha1(R.randbytes(8)).hexdigest()

def luhn_invalid16():
    while True:
        s = pick(["4", "5", "6", "3"]) + rand(DG, 15)
        total = sum((int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2) if i % 2 else int(c) for i, c in enumerate(reversed(s)))
        if total % 10:
            return s

NEG = []
for _ in range(20):
    NEG.append(f"Upgraded from {R.randint(1, 9)}.{R.randint(0, 30)}.{R.randint(0, 99)} to v{R.randint(1, 9)}.{R.randint(0, 30)}.{R.randint(0, 9)}.{R.randint(0, 99)} (build {R.randint(10000, 99999)})")
    NEG.append(f"\"version\": \"{R.randint(0, 4)}.{R.randint(0, 20)}.{R.randint(0, 20)}-rc.{R.randint(1, 9)}\", \"released\": \"20{R.randint(20, 26)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}\"")
    NEG.append(f"commit {sha1()}\nAuthor: CI Bot\nDate:   Tue Dec 1 10:{R.randint(10, 59)}:00 2026 +0100")
    NEG.append(f"sha256:{hashlib.sha256(R.randbytes(8)).hexdigest()}  dist/app-{R.randint(1, 9)}.{R.randint(0, 9)}.tar.gz")
    NEG.append(f"blake3 {hashlib.blake2s(R.randbytes(8)).hexdigest()} events.log")
    NEG.append(f"request_id={uuid.UUID(int=R.getrandbits(128))} trace_id={uuid.UUID(int=R.getrandbits(128))} status=200")
    NEG.append(f"Order #{R.randint(10 ** 7, 10 ** 10)} shipped on {R.randint(1, 28):02d}.{R.randint(1, 12):02d}.2026, total €{R.randint(10, 999)},{R.randint(10, 99)}")
    NEG.append(f"Reference number {luhn_invalid16()} is not a valid card.")
    NEG.append(f"listening on 0.0.0.0:{R.randint(1024, 65535)} and 127.0.0.1:{R.randint(1024, 65535)}")
    NEG.append(f"ISBN 978-{R.randint(0, 1)}-{R.randint(100, 999)}-{R.randint(10000, 99999)}-{R.randint(0, 9)}; ISBN-10 0-306-40615-2")
    NEG.append(f".icon {{ background: url(logo@2x.png); color: #{rand('0123456789abcdef', 6)}; margin: {R.randint(1, 20)}px; }}")
    NEG.append(f"The quarterly revenue was ${R.randint(1, 999)},{R.randint(100, 999)},{R.randint(100, 999)}.{R.randint(10, 99)} (+{R.randint(1, 40)}.{R.randint(0, 9)}% YoY).")
    NEG.append(f"Solve {R.randint(2, 99)}x + {R.randint(2, 99)} = {R.randint(100, 999)}; then 3.14159 * r^2 ~ {R.randint(10, 99)}.{R.randint(100, 999)}")
    plain = pick([b'hello world, this is fine', b'{"page": 2, "sort": "asc"}', b'just some ordinary text'])
    NEG.append("payload: " + base64.b64encode(plain).decode())
    NEG.append(f"Meeting at {R.randint(8, 17)}:{R.randint(10, 59)} on 2026-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}, room {R.randint(100, 999)}.")

NEG += [
    "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "api_key = YOUR_API_KEY", "token: <token>",
    "Authorization: Bearer <your-token-here>", "password: changeme", "secret=${APP_SECRET}", "DB_PASSWORD=\"********\"",
    '{"password": null, "token": true}', "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "pip install scikit-learn  # imports as sklearn; sk-learn is not a package", "set sk-1 to the first slot",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbxJZHtCvGR5Vbu61 deploy@ci",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJRTESMBAGA1UEChMJQmFsdGltb3JlMRMw\n-----END CERTIFICATE-----",
    "max_tokens=4096, temperature=0.2, top_p=0.9", '{"usage": {"input_tokens": 1532, "output_tokens": 220}}',
    "password_min_length: 12\npassword_policy: strict\ntoken_ttl: 3600", "auth: true\nauth_method: oauth2",
    "    password = os.environ[\"DB_PASSWORD\"]", "token = get_token()", "secret_name: prod/db/credentials",
    "password_file=/run/secrets/db_password", "Forgot your password? Click the link we sent.", "tokenizer: cl100k_base",
    "the secret: we ship on Friday", "user@localhost has no mail domain", "Follow @acme_support for updates",
    "npm i lodash@4.17.21 react@18.2.0 @types/node@20.11.5", "docker pull nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
    "Python 3.12.1 on linux; kernel 6.8.0.1024.25", "Windows version 10.0.19041.1, OID 1.3.6.1.4.1.311", "SNMP OID 2.5.4.3 (commonName)",
    "values 1.2.3.4.5 and 300.1.2.3 are not addresses", "timestamp 1764603600123 and epoch 1764603600", "port 8080, 443 and 5432 are open",
    "the range 2024-01-15..2024-02-15 had 2,345,678 events", "call_count=4155552671 (counter overflow)", "+1 for the proposal, +2 from Mia",
    "ratio 3/4, 12:30:45.123, 2026-12-02T22:14:01+00:00", "colors: #ff00aa #0f0 rgb(12, 34, 56)", "Total: USD 1 234 567.89 or EUR 1.234.567,89",
    "e = 2.718281828, phi = 1.6180339887", "Nexus 5X, iPhone 15 Pro, Pixel 8a", "See RFC 5322 section 3.4.1 and ISO 8601.",
    "mv photo@3x.jpg photo.jpg", "card 4111 1111 1111 1112 is Luhn-invalid", "test number 1234 5678 9012 3456",
    "IBAN DE00 1234 5678 9012 3456 78 has a bad checksum", "GB00WEST12345698765432", "SSN 000-12-3456 and 666-12-3456 are never issued",
    "tracking 1Z999AA10123456784 via UPS", "eyJub3QiOiJhIGp3dCJ9 is base64 of a small JSON", "hex id 0x7fffffff and 0xdeadbeef",
    "token_type: Bearer\nexpires_in: 3600", "ghp_ prefix means a GitHub personal token", "AKIA keys start with AKIA",
    "secret: \"{{ vault_secret }}\"", "password: '%(db_password)s'", "api_key: \"<insert key>\"", "client_secret=REPLACE_ME",
    "password: hunter2", "AUTH_URL=https://auth.example.com/oauth/token", "token_url: https://login.example.com/token",
    "The 2026 budget is 12 345 678 and headcount 1 204.", "Use 10.5.3 or later.", "MAC 00:1A:2B:3C:4D:5E",
    "coordinates 48.8566, 2.3522", "chapter 1.2.3.4 of the manual", "latency p99 = 12.5 ms over 1,000,000 requests",
    "pwd: /home/ci/build", "passed: 42, failed: 0", "credentials: see vault", "private_key_path: ~/.ssh/id_rsa",
    "secretary: Ms Novak", "The password field must be at least 8 characters.", "{\"token\": \"\"}",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQENBFzN8NUBCAC9\n-----END PGP PUBLIC KEY BLOCK-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@bastion",
    "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "build 2026.12.02.1845", "redis://:${REDIS_PASS}@cache:6379/0", "open http://bob@example.com/profile and https://example.com:8443/a",
    "amqp://guest:<password>@localhost:5672", "serial no. 5551234567890", "(see page 415) and (555) entries",
]
for t in NEG:
    rec(t)
# A git SHA under a secret name is a secret value, never an AWS secret key (hex, not base64).
rec("aws_secret = da39a3ee5e6b4b0d3255bfef95601890afd80709", ("secret_value", "da39a3ee5e6b4b0d3255bfef95601890afd80709"))

# Ordinary prose, JSON and code that mention none of the kinds.
PROSE = [
    "The scheduler retries a failed activation up to three times before it records the failure.",
    '{"node": "plan", "status": "completed", "attempt": 2, "duration_ms": 1834}',
    "fn main() { let total: u64 = (1..=100).sum(); println!(\"{total}\"); }",
    "Budgets are reserved before a call and settled from the usage the provider reports.",
    "SELECT id, created_at FROM runs WHERE status = 'failed' ORDER BY id DESC LIMIT 50;",
    "The replay reads the log and re-drives the machine without calling any agent.",
]
for t in PROSE:
    rec(t)

for r in records:
    print(json.dumps(r, ensure_ascii=False))
