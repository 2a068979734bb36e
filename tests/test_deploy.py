"""The Kubernetes example (deploy/kubernetes) is valid against the Kubernetes API schemas (kubernetes-validate,
from PyPI, offline, strict: unknown fields are errors), and its config is one the daemon accepts."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from monitor.config import parse
from monitor.errors import ConfigError

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
VERSION = "1.30.0"


def documents():
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


@pytest.mark.parametrize("name,document", list(documents()), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_is_valid_kubernetes(name, document):
    kubernetes_validate.validate(document, VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    deployment = next(d for _, d in documents() if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_the_deployment_probes_hands_off_and_asks_for_a_gpu():
    deployment = next(d for _, d in documents() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "preStop" in container["lifecycle"] and pod["terminationGracePeriodSeconds"] >= 30
    secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets == {"redis-password", "api-token", "whip-token"}  # references, no values


def test_the_configmap_is_a_cluster_config_the_daemon_accepts(monkeypatch):
    config_map = next(d for _, d in documents() if d["kind"] == "ConfigMap")
    import tomllib

    text = config_map["data"]["monitor.toml"]
    for name, value in {"POD_NAME": "monitor-0", "POD_IP": "10.0.0.7", "REDIS_PASSWORD": "pw", "API_TOKEN": "a",
                        "WHIP_TOKEN": "w"}.items():
        monkeypatch.setenv(name, value)
    config = parse(tomllib.loads(text))
    assert config.cluster.enabled and config.instance == "monitor-0"
    assert config.cluster.public_url == "http://10.0.0.7:8080" and config.redis.wait_replicas == 1
    monkeypatch.delenv("REDIS_PASSWORD")
    with pytest.raises(ConfigError, match="REDIS_PASSWORD"):
        parse(tomllib.loads(text))
