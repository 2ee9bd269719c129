// A real OpenID provider for SecuMon's single sign-on tests: the certified `oidc-provider`
// package, on a loopback port it picks itself, with one confidential client (`secumon`,
// PKCE required, port-agnostic loopback redirects as RFC 8252 has for native apps) and a few
// accounts whose logins a test submits without a browser.
//
// It prints one line `{"issuer": "http://127.0.0.1:PORT"}` on standard output once it
// listens, and stops when its standard input closes (so a test that dies leaves nothing).
//
// Accounts named `fault-*` get their ID token altered on its way out of the token endpoint,
// so the SecuMon server's validation meets a token that is wrong in exactly one way:
//   fault-aud   re-signed with the provider's own key, audience another client's
//   fault-exp   re-signed with the provider's own key, expired an hour ago
//   fault-sig   signed by another key under the provider's key id (bad signature)
//   fault-nonce re-signed with the provider's own key, another nonce
// After `POST /test/rotate`, the key set holds a second key, which signs every ID token.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET ?? 'secumon-test-secret';
const PASSWORD = 'correct horse battery';

// Who can log in, and the claims their ID tokens carry.
const ACCOUNTS = {
  alice: { email: 'alice@example.com', groups: ['secumon-admins', 'staff'] },
  bob: { email: 'bob@example.com', groups: ['staff'] },
  carol: { email: 'carol@example.com', groups: ['ops'] },
  // In the admins' group, but with an address the provider has not verified.
  dave: { email: 'dave@example.com', groups: ['secumon-admins'], unverified: true },
  'fault-aud': { email: 'fault-aud@example.com', groups: ['secumon-admins'] },
  'fault-exp': { email: 'fault-exp@example.com', groups: ['secumon-admins'] },
  'fault-sig': { email: 'fault-sig@example.com', groups: ['secumon-admins'] },
  'fault-nonce': { email: 'fault-nonce@example.com', groups: ['secumon-admins'] },
};

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const { privateKey: strangerKey } = await jose.generateKeyPair('RS256', { extractable: true });
// The key a rotation (`POST /test/rotate`) brings: published beside the first one from then
// on, and signing every ID token.
const { privateKey: nextKey, publicKey: nextPublic } = await jose.generateKeyPair('RS256', { extractable: true });
const nextJwk = { ...(await jose.exportJWK(nextPublic)), kid: 'test-key-2', alg: 'RS256', use: 'sig' };
let rotated = false;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'secumon',
      client_secret: CLIENT_SECRET,
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['secumon-test-cookie-key'] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // Scope claims in the ID token itself, as identity providers configured for SSO do.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: !account.unverified, groups: account.groups };
      },
    };
  },
});

async function formBody(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

// The login page and its form: the test posts `login` and `password`; login and consent are
// granted together.
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET' && !match[2]) {
    ctx.type = 'html';
    ctx.body = `<form method="post" action="/interaction/${details.uid}/login">`
      + '<input name="login"><input name="password" type="password"><button>Sign in</button></form>';
    return undefined;
  }
  if (ctx.method !== 'POST' || !match[2]) return next();
  const form = await formBody(ctx.req);
  const login = form.get('login');
  if (!ACCOUNTS[login] || form.get('password') !== PASSWORD) {
    ctx.status = 401;
    ctx.body = 'wrong login or password';
    return undefined;
  }
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  const result = { login: { accountId: login }, consent: { grantId } };
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.respond = false;
  return undefined;
});

// The faults: the ID token of a `fault-*` account is replaced after the provider made it;
// and the key rotation.
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/rotate' && ctx.method === 'POST') {
    rotated = true;
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === '/jwks' && rotated && ctx.body && Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: [...ctx.body.keys, nextJwk] };
    return;
  }
  if (ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
  const claims = jose.decodeJwt(ctx.body.id_token);
  const now = Math.floor(Date.now() / 1000);
  let [key, kid] = [privateKey, signingJwk.kid];
  switch (claims.sub) {
    case 'fault-aud': claims.aud = 'someone-else'; break;
    case 'fault-exp': claims.iat = now - 7200; claims.exp = now - 3600; break;
    case 'fault-sig': key = strangerKey; break;
    case 'fault-nonce': claims.nonce = randomUUID(); break;
    default:
      if (!rotated) return;
      [key, kid] = [nextKey, nextJwk.kid];
  }
  ctx.body = {
    ...ctx.body,
    id_token: await new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(key),
  };
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
