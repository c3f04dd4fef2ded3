"""The containers' health check: `python -m orchestrator.healthcheck [PORT]` exits 0 when the
server on 127.0.0.1:PORT (8000 unless given) answers GET /api/v1/health with 200.

Django answers 400 to a Host header outside ALLOWED_HOSTS, so the request names the first
allowed host. No Django import: it runs every 30 s and must stay cheap.
"""

import http.client
import os
import sys

PATH = "/api/v1/health"


def allowed_host() -> str:
    """A Host header that ALLOWED_HOSTS accepts (".example.com" also allows example.com)."""
    first = os.environ.get("ALLOWED_HOSTS", "").split(",")[0].strip()
    return "localhost" if first in ("", "*") else first.lstrip(".")


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
    try:
        conn.request("GET", PATH, headers={"Host": allowed_host()})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(0 if healthy(int(sys.argv[1]) if len(sys.argv) > 1 else 8000) else 1)
