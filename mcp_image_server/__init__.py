"""mcp-image-server: an MCP server that generates images through many providers."""

__version__ = "0.3.0"

__all__ = ["__version__"]
