# mcp-image-server as a container: Streamable HTTP on 0.0.0.0:8000. Build from the repo root:
#
#   docker build -t mcp-image-server .
#   docker run --rm -p 8000:8000 -e MCP_AUTH_TOKEN=change-me mcp-image-server
#
# The image refuses to serve without MCP_AUTH_TOKEN (a non-loopback bind). Every setting is an
# environment variable (README "Configuration"); deploy/compose.yaml runs this image as two api
# replicas and a worker behind nginx. tests/test_deploy.py checks this file against the package.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Exact pins first, in a layer of their own: rebuilt only when the lock changes.
COPY requirements.lock.txt /tmp/requirements.lock.txt
RUN pip install --no-cache-dir -r /tmp/requirements.lock.txt && rm /tmp/requirements.lock.txt

# Then the package itself on top of them: --no-deps, so nothing unpinned comes in. The web demo
# (served at /demo/) is installed as data files under /usr/local/share/mcp-image-server.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mcp_image_server ./mcp_image_server
COPY web-design-demo ./web-design-demo
RUN pip install --no-cache-dir --no-deps . && rm -rf /src

# An unprivileged user; /data is its working directory (the default MCP_IMAGE_SAVE_DIR,
# ./generated_images, lands there when no MCP_IMAGE_STORE_URL is set).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data
WORKDIR /data
USER 10001:10001

ENV MCP_TRANSPORT=http \
    MCP_HOST=0.0.0.0 \
    MCP_PORT=8000
EXPOSE 8000

# /health needs no token. There is no curl in the slim image, so python's urllib does the GET
# (a non-2xx answer or no answer raises: exit 1). An MCP_ROLE=worker container serves no HTTP:
# give it its own check (deploy/compose.yaml does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MCP_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["mcp-image-server"]
