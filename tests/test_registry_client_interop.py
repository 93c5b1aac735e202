"""What the client writes, skopeo (an independent client) reads the same,
and the other way round."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from connected.registry_client import RegistryClient
from tests.test_registry_client import push_multi_platform

pytestmark = pytest.mark.registries


def skopeo(*args: str) -> bytes:
    if not shutil.which("skopeo"):
        pytest.fail("skopeo is not installed: run ./scripts/test, which installs it")
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=120).stdout


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_skopeo_reads_what_the_client_pushed_and_back(parent_registry, child_registry, docker):
    with RegistryClient(parent_registry.url) as parent, RegistryClient(child_registry.url) as child:
        index, children = push_multi_platform(parent, "interop/app", "v1", docker)
        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{parent_registry.host}/interop/app:v1")
        assert raw == index.content
        skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
               f"docker://{parent_registry.host}/interop/app:v1", f"docker://{child_registry.host}/copied:v1")
        copied = child.get_manifest("copied", "v1")
        assert copied.digest == index.digest and copied.content == index.content
        for descriptor in copied.child_manifests():
            manifest = child.get_manifest("copied", descriptor.digest)
            assert all(child.blob_exists("copied", blob.digest) for blob in manifest.blobs())
