"""HTTPS: certificates from a test CA, bad TLS settings, the plain metrics listener, the self-signed
certificate of `tls = "auto"`, and a real browser on a non-loopback address (in a network namespace)."""

import json
import ssl
import sys

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import cli
from monitor.config import parse
from monitor.daemon import Daemon
from tests.support import netns
from tests.support.certs import CertificateAuthority
from tests.support.runtime import tiny_checkpoint
from tests.support.servers import free_port

TOKEN = "api-T0ken@tls"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ca")
    authority = CertificateAuthority()
    return authority, authority.write(folder / "ca.crt"), folder


@pytest.fixture
async def https_daemon(ca, redis_server, tmp_path):
    authority, _, folder = ca
    cert, key = authority.issue(folder, ["127.0.0.1", "localhost"])
    plain = free_port()
    config = parse({"model": {"path": str(tiny_checkpoint(tmp_path)), "devices": ["cpu"]},
                    "worker": {"max_batch": 4, "buckets": [1, 4]}, "alerts": {"spool_dir": str(tmp_path / "spool")},
                    "redis": {"url": redis_server.url},
                    "http": {"port": 0, "token": TOKEN, "tls_cert": str(cert), "tls_key": key.read_text(),
                             "plain_metrics": f"127.0.0.1:{plain}"}})
    daemon = Daemon(config)
    await daemon.start()
    yield daemon, f"https://127.0.0.1:{daemon.http_port}", f"http://127.0.0.1:{plain}"
    await daemon.stop()


async def get(url, ssl_context, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, ssl=ssl_context, headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


async def test_the_api_answers_over_https_to_clients_that_trust_its_ca(https_daemon, ca):
    daemon, https, plain = https_daemon
    trusting = ssl.create_default_context(cafile=str(ca[1]))
    status, text, headers = await get(f"{https}/streams", trusting, TOKEN)
    assert status == 200 and json.loads(text) == {"streams": []}
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert (await get(f"{https}/streams?token={TOKEN}", trusting))[0] == 401  # never a token in the URL
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(f"{https}/healthz", ssl.create_default_context())  # the system's CAs do not know ours
    async with aiohttp.ClientSession() as http:  # plain HTTP to the HTTPS port gets nowhere
        with pytest.raises(aiohttp.ClientError):
            async with http.get(https.replace("https://", "http://") + "/healthz") as response:
                await response.read()
    ready = json.loads((await get(f"{https}/readyz", trusting))[1])
    assert [listener["url"].split(":")[0] for listener in ready["listeners"]] == ["https", "http"]


async def test_prometheus_scrapes_the_plain_loopback_listener_which_refuses_the_api(https_daemon):
    _, _, plain = https_daemon
    status, text, _ = await get(f"{plain}/metrics", None)
    assert status == 200 and "deepfake_worker_batch_size" in {f.name for f in text_string_to_metric_families(text)}
    assert (await get(f"{plain}/healthz", None))[0] == 200
    for route in ("/streams", "/config", "/publish/x"):
        status, text, _ = await get(f"{plain}{route}", None, TOKEN)
        assert status == 403 and "plain listener" in text


@pytest.mark.parametrize("case,key,message", [
    ("mismatched key", "http.tls_key", "does not match"), ("expired", "http.tls_cert", "expired on"),
    ("missing file", "http.tls_cert", "cannot read"), ("not PEM", "http.tls_cert", "not a PEM certificate"),
    ("key without cert", "http.tls_cert", "go together")])
def test_unusable_tls_settings_exit_2_naming_the_key(ca, tmp_path, capsys, case, key, message):
    authority, _, _ = ca
    cert, private = authority.issue(tmp_path, ["127.0.0.1"])
    other_cert, other_key = authority.issue(tmp_path, ["127.0.0.1"], name="other")
    http = {"mismatched key": f'tls_cert = "{cert}"\ntls_key = "{other_key}"',
            "expired": 'tls_cert = "{}"\ntls_key = "{}"'.format(*authority.issue(tmp_path, ["x"], days_valid=-2,
                                                                                  days_ago=5, name="old")),
            "missing file": f'tls_cert = "{tmp_path / "nope.crt"}"\ntls_key = "{private}"',
            "not PEM": f'tls_cert = "{private}"\ntls_key = "{private}"',
            "key without cert": f'tls_key = "{private}"'}[case]
    path = tmp_path / "monitor.toml"
    path.write_text(f"[http]\n{http}\n")
    assert cli.main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{key}: " in err and message in err and "Traceback" not in err


def test_a_certificate_that_expires_soon_is_a_warning(ca, tmp_path, capsys):
    cert, key = ca[0].issue(tmp_path, ["127.0.0.1"], days_valid=10)
    path = tmp_path / "monitor.toml"
    path.write_text(f'[http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    assert cli.main(["check-config", str(path)]) == 0
    assert "warning: http.tls_cert expires in 10 days" in capsys.readouterr().err


def test_a_daemon_with_a_mismatched_key_exits_2_with_one_line(ca, tmp_path):
    import subprocess

    cert, _ = ca[0].issue(tmp_path, ["127.0.0.1"])
    _, other = ca[0].issue(tmp_path, ["127.0.0.1"], name="other")
    path = tmp_path / "monitor.toml"
    path.write_text(f'[model]\nallow_untrained = true\nsize = "tiny"\n[alerts]\nspool_dir = "{tmp_path / "s"}"\n'
                    f'[http]\nport = {free_port()}\ntls_cert = "{cert}"\ntls_key = "{other}"\n')
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--config", str(path)], capture_output=True,
                            text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "http.tls_key: " in lines[0], result.stderr


# --- a non-loopback address, in a network namespace of its own ------------------------------------------------

def namespace_scenario(folder: str, model: str, camera: str) -> dict:
    """Runs inside the namespace (see test below): tls = "auto" on 192.0.2.10, twice, then a real browser over
    HTTPS with the certificate pinned by its key, then plain HTTP on the same address."""
    import hashlib
    import time
    import urllib.request
    from pathlib import Path

    from cryptography import x509

    from tests.support.browser import chromium
    from tests.support.daemon import DaemonProcess
    from tests.support.servers import RedisServer

    folder, address, out = Path(folder), netns.ADDRESS, {}
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

    def config(port, tls):
        return (f'[model]\npath = "{model}"\ndevices = ["cpu"]\n[worker]\nmax_batch = 4\nbuckets = [1, 4]\n'
                f'[alerts]\nspool_dir = "{folder / "spool"}"\n[redis]\nurl = "{redis.url}"\n'
                f'[http]\nhost = "{address}"\nport = {port}\ntoken = "{TOKEN}"\ntls = "{tls}"\ntls_dir = "{folder / "tls"}"\n'
                f'[whip]\ntoken = "w"\nhost_addresses = ["{address}"]\nmedia_timeout_s = 3\n'
                f'[logging]\nformat = "json"\n[[streams]]\nid = "call"\nurl = "whip"\n')

    def start(name, port, tls):
        path = folder / f"{name}.toml"
        path.write_text(config(port, tls))
        daemon = DaemonProcess(path, folder / f"{name}.log")
        scheme = "https" if tls != "off" else "http"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{scheme}://{address}:{port}/readyz", timeout=2, context=insecure)
                return daemon
            except OSError:
                time.sleep(0.3)
        raise AssertionError(daemon.tail())

    def streams(port):
        request = urllib.request.Request(f"https://{address}:{port}/streams/call",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        return json.loads(urllib.request.urlopen(request, timeout=5, context=insecure).read())

    with RedisServer() as redis:
        port = free_port()
        fingerprints = []
        for run in ("first", "second"):
            daemon = start(run, port, "auto")
            pem = ssl.get_server_certificate((address, port))
            fingerprints.append(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())
            if run == "second":
                break
            assert daemon.stop() == 0
        certificate = x509.load_pem_x509_certificate(pem.encode())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["fingerprints"] = fingerprints
        out["san_ips"] = sorted(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        out["logged_fingerprint"] = any("made a self-signed TLS certificate" in line and "sha256" in line
                                        for line in (folder / "first.log").read_text().splitlines())
        spki = [json.loads(line)["spki_sha256"] for line in (folder / "second.log").read_text().splitlines()
                if line.startswith("{") and json.loads(line).get("event") == "serving HTTPS"][0]
        driver = chromium(folder / "profile", Path(camera), (f"--ignore-certificate-errors-spki-list={spki}",))
        try:
            driver.get(f"https://{address}:{port}/publish/call")
            out["https_page"] = driver.execute_script(
                "return {secure: window.isSecureContext, devices: !!navigator.mediaDevices, "
                "unavailable: !document.getElementById('unavailable').hidden}")
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element("id", "source")).select_by_value("camera")
            driver.find_element("id", "token").send_keys("w")
            driver.find_element("id", "start").click()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and streams(port)["frames_in"] < 5:
                time.sleep(0.5)
            out["frames_over_https"] = streams(port)["frames_in"]
            driver.find_element("id", "stop").click()
        finally:
            driver.quit()
            assert daemon.stop() == 0
        plain = start("plain", port, "off")
        driver = chromium(folder / "profile-plain", Path(camera))
        try:
            driver.get(f"http://{address}:{port}/publish/call")
            out["http_page"] = driver.execute_script(
                "return {secure: window.isSecureContext, unavailable: !document.getElementById('unavailable').hidden,"
                " reason: document.getElementById('unavailable-reason').textContent,"
                " start_disabled: document.getElementById('start').disabled}")
        finally:
            driver.quit()
            assert plain.stop() == 0
        out["clear_text_warnings"] = (folder / "plain.log").read_text().count("tokens and faces travel in clear text")
    return out


def test_auto_tls_off_loopback_and_a_browser_that_captures_only_over_https(tmp_path, face_paths):
    why = netns.available()
    if why:
        pytest.fail(f"the non-loopback cases need a network namespace: {why}")
    from tests.support.browser import write_y4m
    from tests.support.faces import load_crops
    from tests.support.media import face_frames

    camera = write_y4m(tmp_path / "camera.y4m", face_frames(load_crops(face_paths[:1]), 50, size=(640, 480)))
    out = netns.run("tests.test_tls:namespace_scenario", str(tmp_path), str(tiny_checkpoint(tmp_path)), str(camera))
    print(json.dumps(out, indent=1))
    assert out["fingerprints"][0] == out["fingerprints"][1]  # made once, reused after the restart
    assert netns.ADDRESS in out["san_ips"] and out["logged_fingerprint"]
    assert out["https_page"] == {"secure": True, "devices": True, "unavailable": False}
    assert out["frames_over_https"] >= 5  # the browser published over WHIP through HTTPS
    assert out["http_page"]["secure"] is False and out["http_page"]["unavailable"] is True
    assert "https://" in out["http_page"]["reason"] and out["http_page"]["start_disabled"] is True
    assert out["clear_text_warnings"] == 1
