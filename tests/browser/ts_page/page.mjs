// The MCP TypeScript SDK in a browser page (tests/browser/test_ts_sdk_page.py).
//
// Bundled by esbuild into one ES module. The page that loads it sets
// window.MCP_TEST = { mcpUrl, token, text } first; this connects to the
// gateway, on another origin, with that bearer token (the SDK's
// requestInit.headers), calls `echo` and writes the outcome into
// <pre id="result"> as JSON, or the error into <pre id="error">.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const show = (id, value) => {
  const element = document.getElementById(id);
  element.textContent = JSON.stringify(value);
  element.dataset.done = "1";
};

async function main() {
  const { mcpUrl, token, text } = window.MCP_TEST;
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "mcp-oauth-proxy-browser-page", version: "1.0.0" });
  await client.connect(transport);
  const tools = await client.listTools();
  const echoed = await client.callTool({ name: "echo", arguments: { text } });
  const protocolVersion = transport.protocolVersion ?? null;
  await client.close();
  show("result", {
    origin: window.location.origin,
    tools: tools.tools.map((tool) => tool.name).sort(),
    echo: echoed.content?.[0]?.text ?? null,
    isError: Boolean(echoed.isError),
    protocolVersion,
  });
}

main().catch((error) => show("error", String(error?.stack ?? error)));
