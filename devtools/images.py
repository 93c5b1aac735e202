"""Real, runnable OCI images built on the spot (no docker) and pushed with skopeo.

Every image has a shared base layer: a root file system made of the static
busybox (Debian's busybox-static, /bin/busybox) and its applet symlinks
(/bin/sh, /bin/ls, ...). The base layer is byte-identical in every image built
on a machine, so registries share (and can mount) its blob. On top of it each
image has a small layer of its own: /etc/portal-image ("repo:tag"),
/etc/portal-platform, and optionally a random payload so digests differ and
sizes can be chosen.

    from devtools.images import ImageSpec, populate, demo_dataset
    pushed = populate("127.0.0.1:5000", demo_dataset())
    pushed[0].digest   # sha256 of the top manifest (index for multi-platform)

Layouts are OCI image layout directories (`oci:<dir>:<tag>` for skopeo),
cached under PORTAL_IMAGE_CACHE (default `<repo>/.var/image-cache`), keyed by
the spec, so repeated test runs only push.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

BUSYBOX = os.environ.get("PORTAL_BUSYBOX", "/bin/busybox")
MiB = 1024 * 1024
# Bump when the way images are built changes: cached layouts are then rebuilt.
BUILD_VERSION = 2

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

ALL_MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)


def default_cache_dir() -> Path:
    env = os.environ.get("PORTAL_IMAGE_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".var" / "image-cache"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo_env() -> dict:
    """The environment for skopeo: without REGISTRY_AUTH_FILE (tests never want it)."""
    return {k: v for k, v in os.environ.items() if k != "REGISTRY_AUTH_FILE"}


# --------------------------------------------------------------------------
# Layers


def _tar_layer(entries: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    """A deterministic tar (mtime 0, root-owned, sorted) of the given entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in sorted(entries, key=lambda i: i.name):
            data = contents.get(info.name)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, type_=tarfile.REGTYPE, mode=0o644, size=0, linkname="") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _dirs_for(paths) -> set[str]:
    dirs = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


def files_layer_tar(files: dict[str, bytes]) -> bytes:
    """A tar of plain files (paths absolute or relative) with their directories."""
    contents = {p.lstrip("/"): bytes(v) for p, v in files.items()}
    entries = [_info(d, tarfile.DIRTYPE, 0o755) for d in _dirs_for(contents)]
    entries += [_info(p, size=len(v)) for p, v in contents.items()]
    return _tar_layer(entries, contents)


_base_lock = threading.Lock()
_base_cache: dict[str, bytes] = {}


def busybox_rootfs_tar() -> bytes:
    """The base root file system: bin/busybox plus every applet as a symlink."""
    with _base_lock:
        if "tar" in _base_cache:
            return _base_cache["tar"]
        busybox = Path(BUSYBOX).read_bytes()
        applets = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True,
                                 text=True).stdout.split()
        applets = sorted(set(a.strip("/") for a in applets) - {"bin/busybox"})
        contents = {"bin/busybox": busybox,
                    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
                    "etc/group": b"root:x:0:\n"}
        dirs = _dirs_for(list(contents) + applets) | {"tmp", "root", "proc", "dev", "sys", "var", "etc"}
        entries = [_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755) for d in dirs]
        entries.append(_info("bin/busybox", mode=0o755, size=len(busybox)))
        entries += [_info(n, size=len(contents[n])) for n in ("etc/passwd", "etc/group")]
        entries += [_info(a, tarfile.SYMTYPE, 0o777, linkname="/bin/busybox") for a in applets]
        _base_cache["tar"] = _tar_layer(entries, contents)
        return _base_cache["tar"]


def _gzip(data: bytes) -> bytes:
    # Big layers here are random payloads, which do not compress: level 0
    # (stored deflate blocks, still valid gzip) is 20x faster and the same size.
    level = 0 if len(data) > MiB else 6
    return gzip.compress(data, compresslevel=level, mtime=0)


def busybox_base_layer() -> tuple[bytes, str]:
    """(gzipped base layer, diff_id). Identical bytes every call on this machine."""
    tar = busybox_rootfs_tar()
    with _base_lock:
        if "gz" not in _base_cache:
            _base_cache["gz"] = gzip.compress(tar, compresslevel=6, mtime=0)
            _base_cache["diff_id"] = sha256_digest(tar)
        return _base_cache["gz"], _base_cache["diff_id"]


# --------------------------------------------------------------------------
# OCI image layout


def _parse_platform(platform: str) -> dict:
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], not {platform!r}")
    result = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


class _Layout:
    """Writes blobs into an OCI image layout directory (creating it if needed)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.blobs = self.path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        oci_layout = self.path / "oci-layout"
        if not oci_layout.exists():
            oci_layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def put(self, data: bytes, media_type: str, shared_store: Path | None = None) -> dict:
        digest = sha256_digest(data)
        target = self.blobs / digest.split(":", 1)[1]
        if not target.exists():
            linked = False
            if shared_store is not None:
                shared = shared_store / digest.split(":", 1)[1]
                if not shared.exists():
                    shared_store.mkdir(parents=True, exist_ok=True)
                    _atomic_write(shared, data)
                try:
                    os.link(shared, target)
                    linked = True
                except OSError:
                    pass
            if not linked:
                _atomic_write(target, data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def tag(self, tag: str, descriptor: dict) -> None:
        index_path = self.path / "index.json"
        index = (json.loads(index_path.read_text()) if index_path.exists()
                 else {"schemaVersion": 2, "manifests": []})
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get(REF_NAME) != tag]
        index["manifests"].append({**descriptor, "annotations": {REF_NAME: tag}})
        _atomic_write(index_path, json.dumps(index, indent=2).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_image_layout(path, tag: str, files: dict[str, bytes], base_layer: bool = True,
                       platforms=("linux/amd64",), docker_media_types: bool = False,
                       shared_blobs: Path | None = None) -> str:
    """Write an image under `tag` into the OCI image layout directory `path`
    (created if missing; other tags in it are kept).

    Each platform gets a manifest with the busybox base layer (unless
    base_layer=False) and a layer holding `files` plus /etc/portal-platform.
    One platform: the tag points at that manifest. Several: at an OCI image
    index (a Docker manifest list with docker_media_types=True) listing one
    manifest per platform with its `platform` field.

    shared_blobs: a directory the base layer is hard-linked from (saves disk).
    Returns the digest of the manifest (or index) the tag points at.
    """
    if not platforms:
        raise ValueError("at least one platform")
    layout = _Layout(Path(path))
    m_type, cfg_type, layer_type, list_type = (
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LIST) if docker_media_types
        else (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_INDEX))
    base = busybox_base_layer() if base_layer else None
    descriptors, manifests, blob_digests = [], [], set()
    for platform in platforms:
        plat = _parse_platform(platform)
        layers, diff_ids = [], []
        if base:
            layers.append(layout.put(base[0], layer_type, shared_blobs))
            diff_ids.append(base[1])
        own = dict(files)
        own.setdefault("/etc/portal-platform", platform.encode() + b"\n")
        tar = files_layer_tar(own)
        layers.append(layout.put(_gzip(tar), layer_type))
        diff_ids.append(sha256_digest(tar))
        config = {
            **plat,
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "devtools.images"}
                        for _ in diff_ids],
        }
        config_desc = layout.put(json.dumps(config, sort_keys=True).encode(), cfg_type)
        manifest = {"schemaVersion": 2, "mediaType": m_type, "config": config_desc, "layers": layers}
        manifest_bytes = json.dumps(manifest, indent=2).encode()
        desc = layout.put(manifest_bytes, m_type)
        descriptors.append({**desc, "platform": plat})
        manifests.append(manifest_bytes)
        blob_digests.update(d["digest"] for d in [config_desc, *layers])
    if len(descriptors) == 1:
        top = {k: v for k, v in descriptors[0].items() if k != "platform"}
        top_bytes = manifests[0]
    else:
        index = {"schemaVersion": 2, "mediaType": list_type, "manifests": descriptors}
        top_bytes = json.dumps(index, indent=2).encode()
        top = layout.put(top_bytes, list_type)
    layout.tag(tag, top)
    if docker_media_types:
        _write_dir_transport(layout, tag, top_bytes, manifests if len(manifests) > 1 else [], blob_digests)
    return top["digest"]


def _dir_transport_path(layout_path, tag: str) -> Path:
    return Path(layout_path) / "docker-media-types" / tag


def _write_dir_transport(layout: _Layout, tag: str, top: bytes, instances: list[bytes],
                         blob_digests: set[str]) -> None:
    """skopeo's oci: transport only finds OCI media types in index.json, so a
    Docker-media-type image is also written for its dir: transport (manifest.json,
    <hex>.manifest.json per instance, blobs by hex name, hard-linked)."""
    d = _dir_transport_path(layout.path, tag)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "version").write_text("Directory Transport Version: 1.1\n")
    (d / "manifest.json").write_bytes(top)
    for m in instances:
        (d / f"{hashlib.sha256(m).hexdigest()}.manifest.json").write_bytes(m)
    for digest in blob_digests:
        hexd = digest.split(":", 1)[1]
        try:
            os.link(layout.blobs / hexd, d / hexd)
        except OSError:
            shutil.copyfile(layout.blobs / hexd, d / hexd)


def skopeo_source(layout_path, tag: str) -> str:
    """The skopeo source reference of tag in a layout built by build_image_layout."""
    d = _dir_transport_path(layout_path, tag)
    if (d / "manifest.json").exists():
        return f"dir:{d}"
    return f"oci:{layout_path}:{tag}"


def layout_digest(layout_path, tag: str) -> str:
    """The digest the tag points at in an OCI image layout."""
    index = json.loads((Path(layout_path) / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get(REF_NAME) == tag:
            return m["digest"]
    raise KeyError(f"tag {tag!r} not in {layout_path}")


def write_authfile(path, registry_host: str, username: str, password: str) -> Path:
    """A containers-auth.json (mode 600) for skopeo's --authfile: credentials
    never go on a command line, where `ps` shows them."""
    path = Path(path)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {registry_host: {"auth": auth}}}, f)
    return path


def push_layout(layout_path, tag: str, registry_host: str, repo: str,
                dest_tag: str | None = None, authfile: Path | None = None) -> str:
    """Copy oci:<layout>:<tag> (dir: for Docker media types) to docker://<registry_host>/<repo>:<dest_tag or tag>
    with skopeo (--all, digests preserved, plain HTTP). Returns the digest."""
    dest = f"docker://{registry_host}/{repo}:{dest_tag or tag}"
    creds = ["--dest-authfile", str(authfile)] if authfile else ["--dest-no-creds"]
    cmd = ["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests", "--quiet",
           "--retry-times", "2", "--dest-tls-verify=false", *creds,
           skopeo_source(layout_path, tag), dest]
    result = subprocess.run(cmd, capture_output=True, text=True, env=skopeo_env(), timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy to {dest} failed ({result.returncode}): {result.stderr.strip()}")
    return layout_digest(layout_path, tag)


def inspect_raw(registry_host: str, repo: str, ref: str, authfile: Path | None = None) -> bytes:
    """The exact manifest bytes a registry serves (`skopeo inspect --raw`)."""
    sep = "@" if ref.startswith("sha256:") else ":"
    creds = ["--authfile", str(authfile)] if authfile else ["--no-creds"]
    cmd = ["skopeo", "--insecure-policy", "inspect", "--raw", "--tls-verify=false", *creds,
           f"docker://{registry_host}/{repo}{sep}{ref}"]
    result = subprocess.run(cmd, capture_output=True, env=skopeo_env(), timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo inspect {registry_host}/{repo}{sep}{ref} failed: "
                           f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def remote_digest(registry_host: str, repo: str, ref: str, authfile: Path | None = None) -> str:
    """sha256 of the raw manifest bytes, as skopeo reads them."""
    return sha256_digest(inspect_raw(registry_host, repo, ref, authfile))


# --------------------------------------------------------------------------
# Specs, caching, data sets


@dataclass(frozen=True)
class ImageSpec:
    """One image to push: repo:tag, its platforms and media types.

    payload_size random bytes (seeded by `seed`, default derived from
    repo:tag) go to /opt/portal/payload.bin in the image's own layer."""

    repo: str
    tag: str
    platforms: tuple[str, ...] = ("linux/amd64",)
    docker_media_types: bool = False
    payload_size: int = 0
    seed: str = ""
    base_layer: bool = True
    extra_files: tuple[tuple[str, bytes], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    def files(self) -> dict[str, bytes]:
        files = {"/etc/portal-image": f"{self.repo}:{self.tag}\n".encode()}
        if self.seed:
            files["/etc/portal-seed"] = self.seed.encode() + b"\n"
        if self.payload_size:
            rng = random.Random(f"{self.seed or self.ref}:payload")
            files["/opt/portal/payload.bin"] = rng.randbytes(self.payload_size)
        files.update(dict(self.extra_files))
        return files

    def cache_key(self) -> str:
        d = asdict(self)
        d["extra_files"] = [(p, hashlib.sha256(b).hexdigest()) for p, b in self.extra_files]
        st = os.stat(BUSYBOX)
        d["_busybox"] = [st.st_size, int(st.st_mtime)]
        d["_version"] = BUILD_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class PushedImage:
    spec: ImageSpec
    layout: Path
    digest: str

    @property
    def repo(self) -> str:
        return self.spec.repo

    @property
    def tag(self) -> str:
        return self.spec.tag


def build_spec(spec: ImageSpec, cache_dir: Path | None = None) -> Path:
    """The OCI layout of spec (tag = spec.tag), built once and cached."""
    cache = Path(cache_dir or default_cache_dir())
    final = cache / "layouts" / spec.cache_key()
    if (final / "index.json").exists():
        return final
    (cache / "layouts").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache / "layouts"))
    try:
        build_image_layout(tmp, spec.tag, spec.files(), base_layer=spec.base_layer,
                           platforms=spec.platforms, docker_media_types=spec.docker_media_types,
                           shared_blobs=cache / "shared-blobs")
        try:
            os.rename(tmp, final)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def populate(registry_host: str, spec: list[ImageSpec], workers: int = 4,
             cache_dir: Path | None = None, authfile: Path | None = None) -> list[PushedImage]:
    """Build (or reuse cached) layouts and push them all to registry_host
    ("127.0.0.1:PORT"), `workers` skopeo processes at a time. Returns one
    PushedImage per spec, in order, with the digest each tag points at.

    distribution 2.8 answers 500 when two uploads of the same blob (the shared
    base layer) into the same repository overlap, so the first tag of each
    repository is pushed before that repository's other tags; a failed push is
    retried twice."""
    specs = list(spec)
    # Build the base layer once, before threads race for it.
    busybox_base_layer()
    digests: list[str | None] = [None] * len(specs)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        layouts = list(pool.map(lambda s: build_spec(s, cache_dir), specs))
        seen, first, rest = set(), [], []
        for i, s in enumerate(specs):
            (rest if s.repo in seen else first).append(i)
            seen.add(s.repo)

        def push(i: int) -> None:
            digests[i] = _push_with_retry(layouts[i], specs[i].tag, registry_host, specs[i].repo, authfile)

        for phase in (first, rest):
            list(pool.map(push, phase))
    return [PushedImage(s, l, d) for s, l, d in zip(specs, layouts, digests)]


def _push_with_retry(layout: Path, tag: str, registry_host: str, repo: str, authfile: Path | None = None,
                     attempts: int = 3) -> str:
    for attempt in range(attempts):
        try:
            return push_layout(layout, tag, registry_host, repo, authfile=authfile)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def demo_dataset() -> list[ImageSpec]:
    """A small, varied data set: four repositories, several tags, one two-platform
    OCI index, Docker media types (a manifest and a manifest list)."""
    return [
        ImageSpec("hello-world", "1.0"),
        ImageSpec("hello-world", "latest", platforms=("linux/amd64", "linux/arm64")),
        ImageSpec("app/frontend", "1.0", payload_size=64 * 1024),
        ImageSpec("app/frontend", "1.1", payload_size=64 * 1024),
        ImageSpec("app/frontend", "latest", docker_media_types=True),
        ImageSpec("app/backend", "1.0", payload_size=128 * 1024),
        ImageSpec("app/backend", "latest", docker_media_types=True,
                  platforms=("linux/amd64", "linux/arm64")),
        ImageSpec("tools/busybox", "1.36", platforms=("linux/amd64", "linux/arm64")),
        ImageSpec("tools/busybox", "latest", docker_media_types=True),
    ]


def benchmark_dataset(repos: int = 20, tags: int = 5, total_mib: float = 277) -> list[ImageSpec]:
    """repos × tags single-platform OCI images: bench/repo-NN:vT, each with its
    own incompressible (seeded random) payload, payloads adding up to total_mib
    MiB, plus the shared busybox base layer."""
    count = repos * tags
    total = int(total_mib * MiB)
    rng = random.Random(1234)
    # Sizes between 0.5x and 1.5x the mean, scaled to the exact total.
    weights = [rng.uniform(0.5, 1.5) for _ in range(count)]
    scale = total / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[-1] += total - sum(sizes)
    specs = []
    for r in range(repos):
        for t in range(tags):
            specs.append(ImageSpec(f"bench/repo-{r:02d}", f"v{t + 1}", payload_size=sizes[r * tags + t],
                                   seed=f"bench-{r}-{t}"))
    return specs
