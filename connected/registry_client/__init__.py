"""A small client for the OCI distribution protocol (placeholder: being written)."""
import httpx


class RegistryError(Exception):
    pass


def ping(base_url: str, timeout: float = 5.0) -> None:
    """Raise RegistryError unless base_url answers /v2/ as a registry (200 or 401)."""
    try:
        response = httpx.get(base_url.rstrip("/") + "/v2/", timeout=timeout)
    except httpx.HTTPError as e:
        raise RegistryError(f"{base_url} is unreachable: {e}") from e
    if response.status_code not in (200, 401):
        raise RegistryError(f"{base_url} does not answer as an OCI registry (GET /v2/ gave {response.status_code})")
