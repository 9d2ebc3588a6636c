// Tests of the package itself, in Node (no browser): the module loads without a DOM, its
// declarations match what it exports and emits, its version is the server's, and the parts that
// need no peer connection behave as documented. The client's calls against a real server are
// tested with Chromium by the browser tests (sfu/tests/browser), which load this same file from
// the server.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

import * as client from '../src/sfu-client.js';
import { SfuClient, SfuError, parseMediaSections } from '../src/sfu-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = join(here, '..');
const repoDir = join(packageDir, '..');
const source = readFileSync(join(packageDir, 'src/sfu-client.js'), 'utf8');
const declarations = ts.createSourceFile(
  'sfu-client.d.ts',
  readFileSync(join(packageDir, 'src/sfu-client.d.ts'), 'utf8'),
  ts.ScriptTarget.ES2022,
  true,
);

/** The top-level declaration named `name` in the .d.ts. */
function declaration(name) {
  const found = declarations.statements.find((s) => s.name?.text === name);
  assert.ok(found, `sfu-client.d.ts declares ${name}`);
  return found;
}

/** Names of the members of a class or interface declaration. */
function memberNames(node) {
  return node.members.filter((m) => m.name).map((m) => (ts.isStringLiteral(m.name) ? m.name.text : m.name.getText()));
}

/** The string literals of a union type alias. */
function unionLiterals(name) {
  const alias = declaration(name);
  const literals = [];
  const visit = (node) => {
    if (ts.isLiteralTypeNode(node) && ts.isStringLiteral(node.literal)) literals.push(node.literal.text);
    ts.forEachChild(node, visit);
  };
  visit(alias.type);
  return new Set(literals);
}

test('the module loads outside a browser and exports what its declarations say', () => {
  const declared = declarations.statements
    .filter((s) => s.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword))
    .filter((s) => ts.isVariableStatement(s) || ts.isClassDeclaration(s) || ts.isFunctionDeclaration(s))
    .flatMap((s) => (ts.isVariableStatement(s) ? s.declarationList.declarations.map((d) => d.name.text) : [s.name.text]))
    .sort();
  assert.deepEqual(Object.keys(client).sort(), declared);
});

test('every public member of SfuClient is declared, and nothing else', () => {
  const instance = new SfuClient();
  const prototype = Object.getOwnPropertyNames(SfuClient.prototype).filter((n) => n !== 'constructor');
  const actual = [...Object.keys(instance), ...prototype].sort();
  const declared = memberNames(declaration('SfuClient'))
    .filter((n) => n !== 'addEventListener' && n !== 'removeEventListener')
    .sort();
  assert.deepEqual(actual, [...new Set(declared)]);
});

test('every event the client emits is declared with its detail, and nothing else', () => {
  const emitted = new Set([...source.matchAll(/#emit\(\s*'([a-z-]+)'/g)].map((m) => m[1]));
  const declared = new Set(memberNames(declaration('SfuClientEventDetails')));
  assert.deepEqual([...emitted].sort(), [...declared].sort());
});

test("the error codes include the server's and the client's own", () => {
  const declared = unionLiterals('ErrorCode');
  const protocol = readFileSync(join(repoDir, 'signal/src/protocol.rs'), 'utf8');
  const block = protocol.slice(protocol.indexOf('impl ErrorCode'));
  const server = [...block.slice(0, block.indexOf('\n}\n')).matchAll(/ErrorCode::\w+ => "([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(server.length > 10, 'found the server error codes');
  const own = [...source.matchAll(/new SfuError\(\s*(?:[a-z]+ \? )?'([a-z_]+)'(?: : '([a-z_]+)')?/g)].flatMap((m) =>
    m.slice(1).filter(Boolean),
  );
  const emitted = [...source.matchAll(/#emit\('error', \{ code: '([a-z_]+)'/g)].map((m) => m[1]);
  for (const code of [...server, ...own, ...emitted]) assert.ok(declared.has(code), `ErrorCode lists ${code}`);
});

test("the version is the package's and the server's", () => {
  const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  const cargo = readFileSync(join(repoDir, 'Cargo.toml'), 'utf8');
  const workspaceVersion = cargo.match(/\[workspace\.package\][^[]*?\nversion = "([^"]+)"/)?.[1];
  assert.equal(client.VERSION, pkg.version);
  assert.equal(client.VERSION, workspaceVersion);
});

test('constants are frozen and the simulcast layers go low to high', () => {
  assert.ok(Object.isFrozen(client.DEFAULT_MEDIA));
  assert.ok(Object.isFrozen(client.SIMULCAST_ENCODINGS));
  assert.deepEqual(
    client.SIMULCAST_ENCODINGS.map((e) => e.rid),
    ['q', 'h', 'f'],
  );
  const rates = client.SIMULCAST_ENCODINGS.map((e) => e.maxBitrate);
  assert.deepEqual([...rates].sort((a, b) => a - b), rates);
  assert.deepEqual(Object.keys(client.DATA_CHANNELS).sort(), ['lossy', 'reliable']);
  assert.equal(client.DATA_CHANNELS.lossy.maxRetransmits, 0);
});

test('parseMediaSections reads mids, kinds, directions and msids', () => {
  const sdp = [
    'v=0',
    'o=- 1 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=sendrecv',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111',
    'a=mid:0',
    'a=sendonly',
    'a=msid:P1 P1-0',
    'm=video 9 UDP/TLS/RTP/SAVPF 96',
    'a=mid:1',
    'a=ssrc:1234 msid:P2 P2-1',
    'm=application 0 UDP/DTLS/SCTP webrtc-datachannel',
    'a=mid:2',
    'a=inactive',
    '',
  ].join('\r\n');
  assert.deepEqual(parseMediaSections(sdp), [
    { mid: '0', kind: 'audio', port: 9, direction: 'sendonly', streamId: 'P1', trackId: 'P1-0', hasMsid: true },
    { mid: '1', kind: 'video', port: 9, direction: 'sendrecv', streamId: 'P2', trackId: 'P2-1', hasMsid: false },
    { mid: '2', kind: 'application', port: 0, direction: 'inactive', streamId: null, trackId: null, hasMsid: false },
  ]);
  assert.deepEqual(parseMediaSections(''), []);
});

test('a client outside a session refuses to send and reports why', () => {
  const c = new SfuClient();
  assert.equal(c.state, 'idle');
  assert.throws(() => c.sendData({ hi: 1 }), (e) => e instanceof SfuError && e.code === 'not_connected');
  assert.throws(() => c.sendChat('  '), (e) => e instanceof SfuError && e.code === 'bad_message');
  assert.throws(() => c.mute('screen'), (e) => e instanceof SfuError && e.code === 'bad_message');
  assert.equal(c.dataChannel('reliable'), null);
  c.leave(); // harmless when idle
  assert.equal(c.state, 'idle');
});

test('mute state is kept outside a session and announced once per change', () => {
  const c = new SfuClient();
  const seen = [];
  c.addEventListener('local-mute', (e) => seen.push(e.detail));
  assert.equal(c.mute('audio'), false, 'nothing is published yet');
  assert.equal(c.mute('audio'), false);
  assert.equal(c.isMuted('audio'), true);
  assert.equal(c.isMuted('video'), false);
  c.mute('audio', false);
  assert.deepEqual(seen, [
    { kind: 'audio', muted: true },
    { kind: 'audio', muted: false },
  ]);
});

test('join without a camera API fails with media_unavailable, as an event and a rejection', async () => {
  const c = new SfuClient();
  const errors = [];
  c.addEventListener('error', (e) => errors.push(e.detail.code));
  await assert.rejects(
    c.join({ room: 'r', name: 'n' }),
    (e) => e instanceof SfuError && e.code === 'media_unavailable',
  );
  assert.deepEqual(errors, ['media_unavailable']);
  assert.equal(c.state, 'idle', 'a failed join leaves the client ready for another');
  await assert.rejects(c.join({ room: 'r', name: 'n' }), (e) => e.code === 'media_unavailable');
});

test('the package publishes the module, its declarations and the README only', () => {
  const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.exports['.'].default, './src/sfu-client.js');
  assert.equal(pkg.exports['.'].types, './src/sfu-client.d.ts');
  assert.deepEqual(pkg.files.sort(), ['README.md', 'src/sfu-client.d.ts', 'src/sfu-client.js']);
  const readme = readFileSync(join(packageDir, 'README.md'), 'utf8');
  const usage = readFileSync(join(here, 'usage.ts'), 'utf8');
  // The README's example is the one `npm run build` type-checks.
  const example = readme.match(/```js\n([\s\S]*?)```/)?.[1];
  assert.ok(example, 'the README has an example');
  const lines = example.split('\n').filter((l) => l.trim() && !l.startsWith('import '));
  assert.ok(lines.length >= 5);
  for (const line of lines) assert.ok(usage.includes(line.trim()), `test/usage.ts has the README's line: ${line.trim()}`);
});

test("the track sources are the server's", () => {
  const protocol = readFileSync(join(repoDir, 'signal/src/protocol.rs'), 'utf8');
  const block = protocol.slice(protocol.indexOf('impl TrackSource'));
  const server = [...block.slice(0, block.indexOf('\n}\n')).matchAll(/TrackSource::\w+ => "([a-z_]+)"/g)].map((m) => m[1]);
  assert.deepEqual([...client.TRACK_SOURCES], server);
  assert.ok(Object.isFrozen(client.TRACK_SOURCES));
  assert.ok(Object.isFrozen(client.SCREEN_SHARE_ENCODING));
  assert.ok(client.SCREEN_SHARE_ENCODING.maxFramerate <= 30);
});

test('screen share needs a session; pins are kept outside one', async () => {
  const c = new SfuClient();
  const seen = [];
  c.addEventListener('screen-share', (e) => seen.push(e.detail));
  await assert.rejects(c.shareScreen(), (e) => e instanceof SfuError && e.code === 'wrong_state');
  assert.equal(c.screenSharing, false);
  assert.equal(c.screenStream, null);
  assert.equal(c.stopScreenShare(), false, 'nothing to stop');
  assert.deepEqual(seen, []);
  assert.equal(c.pin('p1'), true);
  assert.equal(c.pin('p1'), false, 'already pinned');
  assert.deepEqual([...c.pinned], ['p1']);
  c.pinned.add('p2');
  assert.deepEqual([...c.pinned], ['p1'], 'the getter hands out a copy');
  assert.equal(c.pin('p1', false), true);
  assert.equal(c.pinned.size, 0);
  assert.throws(() => c.pin(''), (e) => e instanceof SfuError && e.code === 'bad_message');
});
