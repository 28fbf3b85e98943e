"""Transports: stdio (the SDK's) and Streamable HTTP (aiohttp)."""
