"""XML signatures of CAP 1.2 alerts (the ``ds:Signature`` the CAP 1.2 schema allows as
the alert's last children), checked with signxml against a source's own certificate.

A source configured with a certificate (PEM) must sign every alert: an enveloped
signature, a direct child of ``alert``, whose one reference covers the whole alert
(``URI=""``), RSA or ECDSA with SHA-2 (no SHA-1, no HMAC).  The certificate given for
the source is the trust anchor: a certificate inside the signature's ``KeyInfo`` is
ignored, so a document signed with any other key fails.  What is read afterwards is
what the signature covers (signxml's ``signed_xml``), never the bytes around it, so
nothing outside the signature (a second, unsigned ``alert`` wrapper, say) is ever read.
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree
from signxml.algorithms import SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from broadcaster.alerts.cap import CapError
from broadcaster.alerts.vocabulary import CAP_NS

__all__ = ["SignatureError", "check_certificate", "verified"]

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
MAX_CERTIFICATE_CHARS = 16_384

#: asymmetric SHA-2 (and SHA-3) methods only: no SHA-1, no shared-secret HMAC
METHODS = frozenset(
    m for m in SignatureMethod if "SHA1" not in m.name and not m.name.startswith("HMAC")
)
EXPECT = SignatureConfiguration(location="./", expect_references=1, signature_methods=METHODS)


class SignatureError(CapError):
    """An alert whose signature is missing or does not verify with its source's key."""


def check_certificate(pem: str) -> str:
    """`pem` if it is one X.509 certificate in PEM form (``ValueError`` otherwise)."""
    text = pem.strip()
    if len(text) > MAX_CERTIFICATE_CHARS:
        raise ValueError("the certificate is too long")
    try:
        x509.load_pem_x509_certificate(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a PEM X.509 certificate: {exc}") from exc
    return text + "\n"


def verified(root: etree._Element, certificate: str) -> etree._Element:
    """The alert as its signature covers it (the signature itself removed), if `root`
    carries a valid signature made with `certificate`'s key; `SignatureError` says why
    not."""
    if root.find(f"{{{DSIG_NS}}}Signature") is None:
        raise SignatureError(
            "the source signs its alerts, and this one carries no XML signature",
            "Bản tin cảnh báo thiếu chữ ký số của nguồn",
        )
    try:
        result = XMLVerifier().verify(root, x509_cert=certificate, expect_config=EXPECT)
    except (InvalidSignature, InvalidDigest, InvalidCertificate, InvalidInput) as exc:
        raise SignatureError(
            f"the alert's XML signature is not valid for the source's certificate: {exc}",
            "Chữ ký số của bản tin cảnh báo không hợp lệ (sai khóa hoặc nội dung đã bị sửa)",
        ) from exc
    signed = result.signed_xml  # type: ignore[union-attr]
    if signed is None or signed.tag != f"{{{CAP_NS}}}alert":
        raise SignatureError(
            "the XML signature does not cover the whole alert",
            "Chữ ký số không bao trùm toàn bộ bản tin cảnh báo",
        )
    return signed
