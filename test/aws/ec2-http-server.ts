import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as ec2 from '@aws-sdk/client-ec2';
import { NormalizedSchema } from '@smithy/core/schema';
import type { Ec2Model } from './ec2-model.js';

/**
 * The EC2 model served over HTTP in EC2's own wire protocol (the "ec2" query
 * protocol: a form-encoded POST with `Action=…`, answered with XML), so an
 * agent in another process runs its real EC2 client, signing, retries and
 * `BERTH_EC2_ENDPOINT` against it. Requests are decoded and responses encoded
 * with the SDK's own service schemas (`@aws-sdk/client-ec2` exports one per
 * shape): the names on the wire are the ones the SDK reads, by construction.
 *
 * Wire rules (AWS "EC2 query protocol" specification, Smithy
 * `aws.protocols#ec2Query`): a member's query key is its `ec2QueryName`, else
 * its `xmlName` capitalized, else its name capitalized; lists are always
 * flattened as `Key.1`, `Key.2`; structures nest as `Key.Member`. The response
 * root is `<ActionResponse>` with the output members by `xmlName` and a
 * `requestId`; list items are `<item>`. Errors are
 * `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`
 * with the error's HTTP status (400 client, 503 throttling, 500 server).
 */
export interface Ec2HttpServer {
  /** `http://127.0.0.1:<port>`: BERTH_EC2_ENDPOINT of an agent. */
  readonly endpoint: string;
  close(): Promise<void>;
}

const XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

type Schema = NormalizedSchema;

function queryKey(member: Schema, name: string): string {
  const t = member.getMergedTraits() as { ec2QueryName?: string; xmlName?: string };
  const base = t.ec2QueryName ?? t.xmlName ?? name;
  return base.charAt(0).toUpperCase() + base.slice(1);
}

/** Decodes `Key.1.Sub=v` pairs into the SDK input shape of `schema`. */
function decode(schema: Schema, params: Map<string, string>, prefix: string): unknown {
  if (schema.isStructSchema()) {
    const out: Record<string, unknown> = {};
    for (const [name, member] of schema.structIterator()) {
      const key = nestedPrefix(prefix) + queryKey(member, name);
      const value = decode(member, params, key);
      if (value !== undefined) out[name] = value;
    }
    return Object.keys(out).length > 0 || prefix === '' ? out : undefined;
  }
  if (schema.isListSchema()) {
    const items: unknown[] = [];
    for (let i = 1; ; i++) {
      const item = decode(schema.getValueSchema(), params, `${prefix}.${i}`);
      if (item === undefined) break;
      items.push(item);
    }
    return items.length > 0 ? items : undefined;
  }
  const raw = params.get(prefix);
  if (raw === undefined) return undefined;
  if (schema.isBooleanSchema()) return raw === 'true';
  if (schema.isNumericSchema()) return Number(raw);
  if (schema.isTimestampSchema()) return new Date(raw);
  return raw;
}

function nestedPrefix(prefix: string): string {
  return prefix === '' ? '' : `${prefix}.`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** Encodes an SDK output value as EC2's XML, element names from the schema. */
function encode(schema: Schema, value: unknown): string {
  if (value === undefined || value === null) return '';
  if (schema.isStructSchema()) {
    let xml = '';
    for (const [name, member] of schema.structIterator()) {
      const v = (value as Record<string, unknown>)[name];
      if (v === undefined || v === null) continue;
      const t = member.getMergedTraits() as { xmlName?: string; xmlFlattened?: number };
      const tag = t.xmlName ?? name;
      if (member.isListSchema() && t.xmlFlattened) {
        for (const item of v as unknown[]) xml += `<${tag}>${encode(member.getValueSchema(), item)}</${tag}>`;
      } else {
        xml += `<${tag}>${encode(member, v)}</${tag}>`;
      }
    }
    return xml;
  }
  if (schema.isListSchema()) {
    const item = schema.getValueSchema();
    const tag = (item.getMergedTraits() as { xmlName?: string }).xmlName ?? 'member';
    return (value as unknown[]).map((v) => `<${tag}>${encode(item, v)}</${tag}>`).join('');
  }
  if (value instanceof Date) return value.toISOString();
  return escapeXml(String(value));
}

function decodeBody(body: string): Map<string, string> {
  return new Map(new URLSearchParams(body));
}

interface OperationSchema {
  input: Schema;
  output: Schema;
}

function operation(action: string): OperationSchema | undefined {
  const op = (ec2 as unknown as Record<string, unknown>)[`${action}$`] as [number, string, string, number, unknown, unknown] | undefined;
  if (!Array.isArray(op) || op[0] !== 9) return undefined;
  return { input: NormalizedSchema.of(op[4] as never), output: NormalizedSchema.of(op[5] as never) };
}

/**
 * Serves `model` on 127.0.0.1 (a free port). Each request is answered by
 * `model`, through a client of its own installed on the model (one model call
 * per request: the caller's SDK does the retrying, over HTTP).
 */
export async function startEc2HttpServer(model: Ec2Model): Promise<Ec2HttpServer> {
  const client = new ec2.EC2Client({ region: model.region, credentials: { accessKeyId: 'model', secretAccessKey: 'model' } });
  model.install(client);
  const sockets = new Set<Socket>();

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const params = decodeBody(Buffer.concat(chunks).toString('utf8'));
    const action = params.get('Action') ?? '';
    const requestId = randomUUID();
    const send = (status: number, xml: string) => {
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
    };
    const fail = (status: number, code: string, message: string) =>
      send(status, `<Response><Errors><Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`);
    const op = operation(action);
    const Command = (ec2 as unknown as Record<string, (new (input: unknown) => unknown) | undefined>)[`${action}Command`];
    if (!op || !Command) return fail(400, 'InvalidAction', `The action ${action} is not valid for this web service.`);
    const input = decode(op.input, params, '');
    try {
      const output: unknown = await client.send(new Command(input) as never);
      send(200, `<${action}Response xmlns="${XMLNS}"><requestId>${requestId}</requestId>${encode(op.output, output)}</${action}Response>`);
    } catch (err) {
      const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      const status = e.$metadata?.httpStatusCode;
      // A model error without EC2 metadata (e.g. "not modelled") is a bug in the test: answer it as a server fault.
      fail(status ?? 500, status ? (e.name ?? 'InternalError') : 'InternalError', e.message ?? String(err));
    }
  }

  const server = createServer((req, res) => {
    answer(req, res).catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
