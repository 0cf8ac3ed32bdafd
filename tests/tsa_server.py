"""A local RFC 3161 time-stamp authority for tests: OpenSSL's own `openssl ts -reply` behind HTTP.

`start_tsa(tmp, key_type)` makes a CA and a TSA certificate (extendedKeyUsage timeStamping,
critical) with an RSA or EC key, writes an `openssl ts` configuration, and serves POSTed
requests on 127.0.0.1 by running `openssl ts -reply` on each one. The answers are OpenSSL's, not
ours, so the tokens are what a real TSA of that kind would send.
"""

from __future__ import annotations

import datetime
import http.server
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = {ess_alg}
"""


@dataclass
class LocalTsa:
    url: str
    ca_file: Path
    folder: Path
    server: http.server.ThreadingHTTPServer
    requests: int = 0

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _key(key_type: str):  # type: ignore[no-untyped-def]
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path, key_type: str, label: str = "Test") -> tuple[Path, Path, Path]:
    """(ca.pem, tsa.pem, tsa.key) in `folder`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, tsa_key = _key(key_type), _key(key_type)
    ca = (x509.CertificateBuilder().subject_name(_name(f"{label} TSA Root CA ({key_type})"))
          .issuer_name(_name(f"{label} TSA Root CA ({key_type})")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    tsa = (x509.CertificateBuilder().subject_name(_name(f"{label} TSA ({key_type})")).issuer_name(ca.subject)
           .public_key(tsa_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=10))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                        data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                        crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
           .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
           .sign(ca_key, hashes.SHA256()))
    ca_file, tsa_file, key_file = folder / "ca.pem", folder / "tsa.pem", folder / "tsa.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tsa_file.write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(tsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return ca_file, tsa_file, key_file


def start_tsa(folder: Path, key_type: str = "rsa", ess_alg: str = "sha256") -> LocalTsa:
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, _, _ = make_pki(folder, key_type)
    (folder / "serial").write_text("01\n")
    config = folder / "tsa.cnf"
    config.write_text(CONFIG.format(dir=folder, ess_alg=ess_alg))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock, tempfile.TemporaryDirectory(dir=folder) as work:
                query, reply = Path(work) / "query.tsq", Path(work) / "reply.tsr"
                query.write_bytes(body)
                done = subprocess.run(["openssl", "ts", "-reply", "-config", str(config), "-queryfile", str(query),
                                       "-out", str(reply)], capture_output=True, timeout=30, check=False)
                answer = reply.read_bytes() if done.returncode == 0 and reply.exists() else b""
                tsa.requests += 1
            if not answer:
                self.send_response(500)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tsa = LocalTsa(url=f"http://127.0.0.1:{server.server_address[1]}/", ca_file=ca_file, folder=folder, server=server)
    return tsa
