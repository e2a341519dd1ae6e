"""Each image runs with the prod hardening: read-only root filesystem, uid 10001, every
capability dropped, no privilege escalation, and no network at all.

The container gets what its Deployment gives it: the dev overlay's plain env values, a tmpfs
for each emptyDir and the ConfigMap files read-only. Then the service must turn SERVING on
gRPC health (the simulator: answer a chat completion), asked from inside the container.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.containers.podman import IMAGES, Podman, grpc_port, target_of, wait_for

pytestmark = pytest.mark.containers

APP_UID = 10001


def run_args(deployment: dict[str, Any], configmaps: dict[str, Any], tmp: Path) -> list[str]:
    """podman run options for the Deployment's env and volumes."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args: list[str] = []
    for env in container.get("env", []):
        if "value" in env and env["name"] != "OTEL_EXPORTER_OTLP_ENDPOINT":
            args += ["--env", f"{env['name']}={env['value']}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            args += ["--tmpfs", f"{mount['mountPath']}:rw,nosuid,nodev,mode=1777"]
        elif "configMap" in volume:
            folder = tmp / mount["name"]
            folder.mkdir()
            for file, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (folder / file).write_text(text)
            args += ["--volume", f"{folder}:{mount['mountPath']}:ro"]
        else:
            raise AssertionError(f"unexpected volume {volume}")
    return args


@pytest.mark.parametrize("target", IMAGES)
def test_image_serves_hardened(
    podman: Podman, tmp_path: Path, dev_overlay: list[dict[str, Any]], target: str
) -> None:
    configmaps = {d["metadata"]["name"]: d for d in dev_overlay if d["kind"] == "ConfigMap"}
    (deployment,) = [d for d in dev_overlay if d["kind"] == "Deployment" and target_of(d) == target]
    name = f"{podman.run_id}-{target}"
    podman.containers.append(name)
    podman(
        "run", "--detach", "--name", name,
        "--read-only", "--user", f"{APP_UID}:{APP_UID}", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "--network=none",
        *run_args(deployment, configmaps, tmp_path),
        podman.image(target),
    )  # fmt: skip

    try:
        port = grpc_port(deployment)
        if port is not None:
            wait_for(target, lambda: podman.health(name, f"127.0.0.1:{port}"), "SERVING")
        else:
            healthz = "http://127.0.0.1:8700/healthz"
            wait_for(target, lambda: str(podman.http(name, "GET", healthz)["status"]), "200")
            models = podman.http(name, "GET", "http://127.0.0.1:8700/us-east/v1/models")
            model = models["body"]["data"][0]["id"]
            reply = podman.http(
                name,
                "POST",
                "http://127.0.0.1:8700/us-east/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "hello"}]},
            )
            assert reply["status"] == 200, reply
            assert reply["body"]["choices"][0]["message"]["content"], reply
    except AssertionError as error:
        raise AssertionError(f"{error}\n{podman.logs(name)}") from None

    # The hardening really holds inside: uid, no effective capabilities, nothing writable.
    status = podman("exec", name, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[0] == str(APP_UID)
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    for path in ("/app/written", "/opt/venv/written"):
        touched = podman("exec", name, "touch", path, check=False)
        assert touched.returncode != 0 and "Read-only file system" in touched.stderr, path
    assert podman.state(name) == "running", podman.logs(name)
