// An MCP client on the official TypeScript SDK, as IDEs and agents build
// them: it connects to keygate's /mcp with an API key, lists the tools it
// sees, calls an allowed one and a denied one, tries a wrong key, and prints
// what happened as one JSON object for the Go test to check.
//
// Usage: node client.mjs <mcp-url> <api-key> <calls-json> <denied-tool>
// where calls-json is [{"name": "...", "arguments": {...}}, ...].
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, apiKey, callsJSON, deniedTool] = process.argv.slice(2);
if (!url || !apiKey || !callsJSON || !deniedTool) {
  console.error("usage: node client.mjs <mcp-url> <api-key> <calls-json> <denied-tool>");
  process.exit(2);
}

function connect(key) {
  const client = new Client({ name: "keygate-interop", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  return { client, transport };
}

const out = { tools: [], calls: [], denied: null, wrongKey: null };
const { client, transport } = connect(apiKey);
await client.connect(transport);
out.protocolVersion = transport.protocolVersion ?? null;
out.session = Boolean(transport.sessionId);

// Every page, so the check is on the whole list the key may see.
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : undefined);
  for (const tool of page.tools) {
    out.tools.push({ name: tool.name, description: tool.description ?? "", hasOutputSchema: Boolean(tool.outputSchema) });
  }
  cursor = page.nextCursor;
} while (cursor);

// callTool validates structuredContent against the tool's output schema, so
// a schema or result mangled on the way through keygate fails here.
for (const call of JSON.parse(callsJSON)) {
  const res = await client.callTool(call);
  out.calls.push({
    name: call.name,
    isError: res.isError ?? false,
    text: (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    structuredContent: res.structuredContent ?? null,
  });
}

try {
  const res = await client.callTool({ name: deniedTool, arguments: {} });
  out.denied = { refused: false, isError: res.isError ?? false };
} catch (err) {
  out.denied = { refused: true, code: err.code ?? null, message: String(err.message ?? err) };
}

await transport.terminateSession();
await client.close();

const wrong = connect(apiKey.slice(0, -1) + (apiKey.endsWith("A") ? "B" : "A"));
try {
  await wrong.client.connect(wrong.transport);
  out.wrongKey = { refused: false };
  await wrong.client.close();
} catch (err) {
  out.wrongKey = { refused: true, code: err.code ?? null, message: String(err.message ?? err) };
}

console.log(JSON.stringify(out));
