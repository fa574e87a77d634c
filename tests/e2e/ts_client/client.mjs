// The MCP TypeScript SDK as a real client of the gateway (tests/e2e/test_ts_client.py).
//
//   node client.mjs <mcp-url> <user> <text>
//
// Connects from scratch with the SDK's OAuth support: StreamableHTTPClientTransport
// with an OAuthClientProvider. The SDK discovers, registers (DCR) and builds the
// authorize URL; redirectToAuthorization plays the user's browser with fetch,
// manual redirects and a cookie jar (consent page, then the IdP login, then the
// proxy's callback), then transport.finishAuth(code) redeems the code. Then it
// lists tools, calls echo and whoami, calls count with a progress token (the
// progress notifications stream as SSE events while the tool runs, each
// stamped with its arrival time), and prints one JSON object on stdout with
// the protocol revision negotiated and the ones this SDK version knows.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import {
  LATEST_PROTOCOL_VERSION,
  SUPPORTED_PROTOCOL_VERSIONS,
} from "@modelcontextprotocol/sdk/types.js";
import { randomBytes } from "node:crypto";

const [mcpUrl, user, text] = process.argv.slice(2);
if (!mcpUrl || !user || !text) {
  console.error("usage: node client.mjs <mcp-url> <user> <text>");
  process.exit(64);
}
const REDIRECT_URI = "http://127.0.0.1:33419/callback";
const MAX_HOPS = 10;

// Bounded: never hang the test.
setTimeout(() => {
  console.error("timed out");
  process.exit(3);
}, 60_000).unref();

// ------------------------------------------------------------------ browser --

/** Cookies per host:port, sent back as a browser on loopback would. */
class CookieJar {
  constructor() {
    this.jars = new Map();
  }
  store(url, response) {
    const host = new URL(url).host;
    const jar = this.jars.get(host) ?? new Map();
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const eq = pair.indexOf("=");
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    this.jars.set(host, jar);
  }
  header(url) {
    const jar = this.jars.get(new URL(url).host);
    if (!jar || jar.size === 0) return {};
    return { Cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") };
  }
}

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'", "#x27": "'" };
const unescape = (s) => s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_, e) => ENTITIES[e]);

function consentForm(html, pageUrl) {
  const form = html.match(/<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i);
  if (!form) throw new Error(`no consent form on ${pageUrl}`);
  const fields = {};
  for (const m of form[2].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields[m[1]] = unescape(m[2]);
  }
  if (!/name="action" value="approve"/.test(form[2])) throw new Error("no approve button");
  return { action: new URL(unescape(form[1]), pageUrl).href, fields };
}

/** Follow the authorize URL as `user` until the redirect back to REDIRECT_URI. */
async function browse(authorizeUrl, user) {
  const jar = new CookieJar();
  const proxyOrigin = new URL(authorizeUrl).origin;
  const clientOrigin = new URL(REDIRECT_URI).origin;
  const hops = [];
  const go = async (url, init = {}) => {
    const response = await fetch(url, {
      ...init,
      redirect: "manual",
      headers: { Accept: "text/html", ...(init.headers ?? {}), ...jar.header(url) },
    });
    jar.store(url, response);
    hops.push(`${init.method ?? "GET"} ${url} => ${response.status}`);
    return response;
  };
  const form = (data) => ({
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(data).toString(),
  });

  let url = authorizeUrl;
  let response = await go(url);
  let consented = false;
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    if (response.status >= 300 && response.status < 400) {
      const target = new URL(response.headers.get("location"), url).href;
      if (new URL(target).origin === clientOrigin) {
        return { redirect: target, hops, consented };
      }
      url = target;
      // oidc-provider-mock: POST its authorize URL with the subject to log in.
      response =
        new URL(target).origin === proxyOrigin
          ? await go(target)
          : await go(target, form({ sub: user }));
      continue;
    }
    if (response.status === 200 && new URL(url).origin === proxyOrigin && !consented) {
      const { action, fields } = consentForm(await response.text(), url);
      consented = true;
      url = action;
      response = await go(action, form({ ...fields, action: "approve" }));
      continue;
    }
    throw new Error(`unexpected ${response.status} at ${url}\n${hops.join("\n")}`);
  }
  throw new Error(`more than ${MAX_HOPS} hops\n${hops.join("\n")}`);
}

// ----------------------------------------------------------------- provider --

/** An in-memory OAuthClientProvider whose "browser" is browse() above. */
class BrowserProvider {
  constructor(user) {
    this.user = user;
    this.savedClient = undefined;
    this.savedTokens = undefined;
    this.verifier = undefined;
    this.expectedState = undefined;
    this.authorizeUrls = [];
    this.login = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: "mcp-oauth-proxy e2e TypeScript client",
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    this.expectedState = randomBytes(16).toString("hex");
    return this.expectedState;
  }
  clientInformation() {
    return this.savedClient;
  }
  saveClientInformation(info) {
    this.savedClient = info;
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens) {
    this.savedTokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    if (!this.verifier) throw new Error("no code verifier saved");
    return this.verifier;
  }
  async redirectToAuthorization(authorizationUrl) {
    this.authorizeUrls.push(authorizationUrl.href);
    const result = await browse(authorizationUrl.href, this.user);
    const params = new URL(result.redirect).searchParams;
    if (params.get("state") !== this.expectedState) throw new Error("state mismatch");
    if (!params.get("code")) throw new Error(`authorization failed: ${result.redirect}`);
    this.login = { ...result, code: params.get("code"), iss: params.get("iss") };
  }
}

// --------------------------------------------------------------------- main --

const provider = new BrowserProvider(user);
const client = new Client({ name: "mcp-oauth-proxy-ts-e2e", version: "1.0.0" });
const transportFor = () =>
  new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });

let firstAttempt = "connected";
let transport = transportFor();
try {
  await client.connect(transport);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  firstAttempt = "unauthorized";
  if (!provider.login) throw new Error("the SDK did not start the browser flow");
  transport = transportFor();
  await transport.finishAuth(provider.login.code);
  await client.connect(transport);
}

const tools = await client.listTools();
const echoed = await client.callTool({ name: "echo", arguments: { text } });
const who = await client.callTool({ name: "whoami", arguments: {} });
const progress = [];
const countStarted = Date.now();
const counted = await client.callTool(
  { name: "count", arguments: { to: 3, delay_seconds: 0.3 } },
  undefined,
  {
    onprogress: (p) =>
      progress.push({ progress: p.progress, total: p.total, atMs: Date.now() - countStarted }),
  },
);
const countDoneMs = Date.now() - countStarted;
const protocolVersion = transport.protocolVersion ?? null;
await client.close();

console.log(
  JSON.stringify({
    firstAttempt,
    tools: tools.tools.map((tool) => tool.name).sort(),
    echo: echoed.content?.[0]?.text ?? null,
    echoIsError: Boolean(echoed.isError),
    whoami: who.structuredContent ?? null,
    count: counted.content?.[0]?.text ?? null,
    progress,
    countDoneMs,
    protocolVersion,
    sdkLatest: LATEST_PROTOCOL_VERSION,
    sdkSupported: SUPPORTED_PROTOCOL_VERSIONS,
    clientId: provider.savedClient?.client_id ?? null,
    authorizeUrls: provider.authorizeUrls,
    consented: provider.login?.consented ?? false,
    iss: provider.login?.iss ?? null,
    hops: provider.login?.hops ?? [],
    tokenType: provider.savedTokens?.token_type ?? null,
    hasRefreshToken: Boolean(provider.savedTokens?.refresh_token),
  }),
);
