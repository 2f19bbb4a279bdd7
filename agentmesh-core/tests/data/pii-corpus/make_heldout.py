#!/usr/bin/env python3
"""Writes heldout.jsonl: labelled records written apart from the detectors (by the main
session, after they were tuned on corpus.jsonl), so their scores are out of sample. Values are
made up; card and IBAN checksums are computed here; labels follow corpus.jsonl's convention (a
value in a secret-ish field is a secret_value too). Re-run: python3 make_heldout.py > heldout.jsonl
"""
import json, base64
recs=[]
def r(text,*spans): recs.append({"text":text,"spans":[{"kind":k,"text":t} for k,t in spans]})
def luhn_ok(n):
    d=[int(c) for c in n][::-1]; s=0
    for i,x in enumerate(d):
        if i%2: x*=2; x-= 9 if x>9 else 0
        s+=x
    return s%10==0
def luhn_fix(prefix,length):
    for last in range(10):
        n=prefix+"0"*(length-len(prefix)-1)+str(last)
        if luhn_ok(n): return n
def iban(cc,bban):
    s=bban+cc+"00"; num="".join(str(int(c,36)) for c in s); chk=98-int(num)%97
    return f"{cc}{chk:02d}{bban}"
# email
for t,e in [("Ping me at rosa.martins@example.org when the build is green.","rosa.martins@example.org"),
 ("From: \"Dev Ops\" <devops+alerts@ops.example.net>","devops+alerts@ops.example.net"),
 ('{"owner": "k.ito@research.example.com", "team": "ml"}',"k.ito@research.example.com"),
 ("cc: a_b-c@sub.domain.example","a_b-c@sub.domain.example"),
 ("2026-11-03 12:01:55 WARN bounce for noreply@example.com (550)","noreply@example.com"),
 ("name,email\nLena,lena.h@example.net","lena.h@example.net"),
 ("Contact FINANCE@EXAMPLE.COM for invoices.","FINANCE@EXAMPLE.COM"),
 ("mailto:ticket-4411@support.example.org?subject=hi","ticket-4411@support.example.org"),
 ("Thanks! — Ravi (ravi.k@example.co.uk)","ravi.k@example.co.uk"),
 ("user=t.nguyen@example.com;role=admin","t.nguyen@example.com"),
 ("Reply to o'brien.j@example.ie if you disagree.","o'brien.j@example.ie"),
 ("Send the draft to marta@example.es, please","marta@example.es")]: r(t,("email",e))
# phone
for t,p in [("Call the desk on +1 212 555 0148 after 9.","+1 212 555 0148"),
 ("Mobile: +447700900123","+447700900123"),
 ('{"phone": "+33 6 12 34 56 78"}',"+33 6 12 34 56 78"),
 ("Our Berlin office: +49 30 901820","+49 30 901820"),
 ("tel (312) 555-0173 ext 4","(312) 555-0173"),
 ("reach Sam at 646-555-0122 tonight","646-555-0122"),
 ("Sydney support +61 2 9374 4000","+61 2 9374 4000"),
 ("Tokyo: +81 3-1234-5678","+81 3-1234-5678"),
 ("Fax +1-800-555-0199","+1-800-555-0199"),
 ("India helpline +91 22 2778 1234","+91 22 2778 1234"),
 ("whatsapp +55 11 91234 5678","+55 11 91234 5678"),
 ("phone: 020 7946 0321","020 7946 0321")]: r(t,("phone",p))
# ssn
for t,s in [("SSN 123-45-6789 on file","123-45-6789"),
 ('{"ssn": "536-22-1180"}',"536-22-1180"),("ssn=401 23 5567","401 23 5567"),
 ("Employee 7731, SSN: 287-65-4321, start 2026-01-02","287-65-4321"),("tax id 609-33-2211 (US)","609-33-2211"),
 ("SSN 572889012 verified","572889012"),("the social security no. is 332-18-0042","332-18-0042"),
 ("ssn,name\n455-21-9087,Bo","455-21-9087"),("Dependent SSN 771-04-5550","771-04-5550"),
 ("form W-2 box a: 118-42-6673","118-42-6673"),("SSN:\t245-67-8123","245-67-8123")]: r(t,("ssn",s))
# card
cards=[luhn_fix("4532",16),luhn_fix("5424",16),luhn_fix("2223",16),luhn_fix("3714",15),luhn_fix("6011",16),luhn_fix("3530",16),luhn_fix("6250",16),luhn_fix("3056",14),luhn_fix("4916",16),luhn_fix("5105",16),luhn_fix("6011",16)[:-1]+"",luhn_fix("4000",13)]
cards=[c for c in cards if c and luhn_ok(c)]
def grp(c):
    if len(c)==15: return c[:4]+" "+c[4:10]+" "+c[10:]
    return " ".join(c[i:i+4] for i in range(0,len(c),4))
tmpl=["Charge card {} for the renewal.","card_number={}","Paid with {} exp 04/29",'{{"pan": "{}"}}',"PAN: {}","Visa ending... full number {} (do not log)"]
for i,c in enumerate(cards):
    shown = grp(c) if i%2==0 else (c if i%3 else "-".join(c[j:j+4] for j in range(0,len(c),4)))
    r(tmpl[i%len(tmpl)].format(shown),("card",shown))
# iban
ibans=[iban("DE","370400440532013000"),iban("GB","NWBK60161331926819"),iban("FR","20041010050500013M02606"),iban("NL","ABNA0417164300"),iban("ES","21000418450200051332"),iban("IT","X0542811101000000123456"),iban("BE","539007547034"),iban("CH","0076201162385295" [0:17] if False else "00762011623852957"),iban("AT","1904300234573201"),iban("PL","109010140000071219812874"),iban("SE","50000000058398257466"),iban("IE","AIBK93115212345678")]
for i,b in enumerate(ibans):
    shown = " ".join(b[j:j+4] for j in range(0,len(b),4)) if i%2 else b
    r(["Wire to IBAN {} by Friday.","iban: {}",'{{"iban":"{}"}}',"Beneficiary account {}"][i%4].format(shown),("iban",shown))
# aws access
for t,k in [("aws_access_key_id = AKIAZ7Q2MX4LPN6RT3VB","AKIAZ7Q2MX4LPN6RT3VB"),("export AWS_ACCESS_KEY_ID=ASIAQ3W7ERT5YU2IO6PA","ASIAQ3W7ERT5YU2IO6PA"),
 ('"AccessKeyId": "AKIAV4B6N2M7K3J5H2G4"',"AKIAV4B6N2M7K3J5H2G4"),("key AROAX2C4V6B7N3M5K2L7 leaked","AROAX2C4V6B7N3M5K2L7"),
 ("AIDAS3D5F7G2H4J6K7L2 is the user id","AIDAS3D5F7G2H4J6K7L2"),
 ("AKIA4TG7HY2UJ6IK3OL5","AKIA4TG7HY2UJ6IK3OL5"),("id=AKIAB7C3D5E2F4G6H7J3&secret=...","AKIAB7C3D5E2F4G6H7J3"),
 ("AWS key AKIAW2E3R4T5Y6U7I2O3 rotated","AKIAW2E3R4T5Y6U7I2O3"),("ANPAZ5X7C2V3B4N6M7Q2 role","ANPAZ5X7C2V3B4N6M7Q2")]: r(t,("aws_access_key",k))
r("Applicant social security number: 087-05-1121? no, 219-09-9991",("ssn","087-05-1121"),("ssn","219-09-9991"))
r("creds: AKIAJ2K4L6M7N2P3Q5R7 / see vault",("aws_access_key","AKIAJ2K4L6M7N2P3Q5R7"),("secret_value","AKIAJ2K4L6M7N2P3Q5R7"))
# aws secret
for k in ["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","u7Ng3Hq9Lw2Ex5Rt8Yp1Zk4Mc6Vb0Nj3Df7Gs2Ab","Q2w3E4r5T6y7U8i9O0p1A2s3D4f5G6h7J8k9L0zX","pLm9OkN8ijB7uhV6ygC5tfX4rdZ3esW2aqQ1zxS0","h5G/8kL2+mN4pQ6rS8tU0vW2xY4zA6bC8dE0fG2H","Tz9Xy8Wv7Ut6Sr5Qp4On3Ml2Kj1Ih0Gf9Ed8Cb7A","m1N2b3V4c5X6z7L8k9J0h1G2f3D4s5A6p7O8i9U0","R4nD0mS3cr3tK3yF0rT3st1ngPurp0s3sOnlyAbC"]:
    r(f"aws_secret_access_key = {k}",("aws_secret_key",k),("secret_value",k))
r("AWS_SECRET_ACCESS_KEY=Xk3Lm9Pq2Rs8Tu4Vw6Yz1Ab5Cd7Ef0Gh2Ij4Kl6M",("aws_secret_key","Xk3Lm9Pq2Rs8Tu4Vw6Yz1Ab5Cd7Ef0Gh2Ij4Kl6M"),("secret_value","Xk3Lm9Pq2Rs8Tu4Vw6Yz1Ab5Cd7Ef0Gh2Ij4Kl6M"))
# private keys
body="MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8VEEh3lX8ctNu1oN5p5gMcB9h\nQ7wN2fCz0k9mB1s4Jp6Lr8Tq2Vx5Yz3Ab7Cd9Ef1Gh3Ij5Kl7Mn9Op1Qr3St5Uv"
for kind in ["RSA ","EC ","","OPENSSH ","ENCRYPTED "]:
    pem=f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
    r(f"key file:\n{pem}\n",("private_key",pem))
    esc=pem.replace("\n","\\n")
    r('{"private_key_pem": "'+esc+'"}',("private_key",esc))
# jwt
def b64u(d): return base64.urlsafe_b64encode(json.dumps(d,separators=(",",":")).encode()).decode().rstrip("=")
for i in range(10):
    tok=b64u({"alg":["HS256","RS256","ES256"][i%3],"typ":"JWT"})+"."+b64u({"sub":f"user{i}","iat":1700000000+i,"scope":"read"})+"."+base64.urlsafe_b64encode(bytes(range(i,i+32))).decode().rstrip("=")
    t=["Authorization: Bearer {}","token={}","jwt: {}",'{{"id_token":"{}"}}'][i%4].format(tok)
    # A token in a secret-ish field is a secret value too (the corpus's convention).
    r(t,("jwt",tok),*([("secret_value",tok)] if i%4 != 2 else []))
# ipv4
for t,ip in [("connection from 203.0.113.45 refused","203.0.113.45"),("host=10.20.30.40 port=5432","10.20.30.40"),("ssh admin@192.168.1.17","192.168.1.17"),
 ('{"client_ip": "198.51.100.7"}',"198.51.100.7"),("X-Forwarded-For: 172.16.254.1","172.16.254.1"),("ping 8.8.4.4","8.8.4.4"),
 ("GET / from 100.64.12.9","100.64.12.9"),("nameserver 9.9.9.9","9.9.9.9"),("ip,hits\n203.0.113.200,12","203.0.113.200"),("peer 45.33.32.156:443","45.33.32.156")]: r(t,("ipv4",ip))
# api keys
for t,k in [
 ("anthropic key sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7Zy6Xw5Vu4Ts3Rq2Po1NmAA","sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7Zy6Xw5Vu4Ts3Rq2Po1NmAA"),
 ("git remote uses ghp_9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX","ghp_9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX"),
 ("slack: xoxb-2048-4096-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7","xoxb-2048-4096-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7"),
 ("stripe sk_live_51HxYz2AbCdEfGhIjKlMnOpQrStUvWx","sk_live_51HxYz2AbCdEfGhIjKlMnOpQrStUvWx"),
 ("maps key AIzaSyD4f6G8h0J2k4L6m8N0p2Q4r6S8t0U2v4W","AIzaSyD4f6G8h0J2k4L6m8N0p2Q4r6S8t0U2v4W"),
 ("glpat-Xy7Zw5Vu3Ts1Rq9Po7Nm is the runner token","glpat-Xy7Zw5Vu3Ts1Rq9Po7Nm"),
 ("HF_TOKEN hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789","hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
 
 ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345","github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345")]: r(t,("api_key",k))
r("OPENAI_API_KEY=sk-proj-4fG7hJ2kL9mN3pQ6rS8tU1vW5xY0zA2bC4dE6fG8hJ0k",("api_key","sk-proj-4fG7hJ2kL9mN3pQ6rS8tU1vW5xY0zA2bC4dE6fG8hJ0k"),("secret_value","sk-proj-4fG7hJ2kL9mN3pQ6rS8tU1vW5xY0zA2bC4dE6fG8hJ0k"))
r("//registry.npmjs.org/:_authToken=npm_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8",("api_key","npm_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8"),("secret_value","npm_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8"))
# secret values
for t,v in [("db_password=Tr0ub4dor&3xQ9z","Tr0ub4dor&3xQ9z"),('{"client_secret": "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"}',"9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"),
 ("REDIS_PASSWORD: 'Xq7!mP2#vL9$wK4z'","Xq7!mP2#vL9$wK4z"),("auth_token = Zk8Yp3Lq7Wm2Nx5Rv9Tc","Zk8Yp3Lq7Wm2Nx5Rv9Tc"),
 ('SECRET_KEY="django-insecure-4k$8m!2p@7q#9r"',"django-insecure-4k$8m!2p@7q#9r"),("passwd: Hunter2Hunter2Xyz!","Hunter2Hunter2Xyz!"),
 ("api_secret=a1B2c3D4e5F6g7H8i9J0","a1B2c3D4e5F6g7H8i9J0"),('"password":"S3cure-P4ss-2026"',"S3cure-P4ss-2026"),
 ("credential=Qm9vdGNhbXBTZWNyZXQxMjM0","Qm9vdGNhbXBTZWNyZXQxMjM0")]:
    r(t,("secret_value",v))
r("SMTP_PASS=gT5hY8jU2kI9pL3oM7",("secret_value","gT5hY8jU2kI9pL3oM7"))
# hard negatives
neg=["Upgrade to version 10.0.19041.1 before Friday.","sha1 3f786850e387550fdab836ed7e6dc881de23001b in main","UUID 123e4567-e89b-12d3-a456-426614174000",
"Order #4111111111111112 shipped","ISBN 978-3-16-148410-0","The meeting is on 2026-11-03 at 14:30.","Price: $1,234.56 per seat","Use placeholder sk-xxxxxxxxxxxxxxxxxxxx",
"YOUR_API_KEY goes here","password=<your password>","token: ${GITHUB_TOKEN}","ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host","-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
"-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----","See section 4.2.1.3 of the spec","logo@2x.png","@alice mentioned you","npm i left-pad@1.3.0",
"color #ff5733","1 + 2 = 3 and 10 * 20 = 200","Port 8080 and 443 are open","v1.2.3.4 released","OID 1.3.6.1.4.1.311","127.0.0.1 is localhost","0.0.0.0/0 allows all",
"AKIAIOSFODNN7EXAMPLE is the AWS docs example","git commit 9fceb02d0ae598e95dc970b74767f19372d61af8","blake3 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
"The invoice total is 12345678901 cents","Call me maybe","password: changeme","secret = os.environ['SECRET']","api_key: null","timeout=30000",
"Distance 123-45-678 km","build 2026.11.30.1","lat,lon 52.5200,13.4050","IBAN format is like CC00 XXXX","+ 1 2 3","temperature 98.6 F","sk-learn is a library",
"See ISO 13616 for IBANs","tracking 1Z999AA10123456784","eyJhbGciOiJIUzI1NiJ9 is only a header","a.b.c dotted name","user@localhost","run-8f2a9c1d4e6b7a30","phone: n/a"]
for t in neg: r(t)
for x in recs: print(json.dumps(x, ensure_ascii=False))
