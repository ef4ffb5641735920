// A real OpenID Connect provider for the sign-in tests: oauth2-mock-server's
// issuer and service (discovery, JWKS, /authorize that approves at once,
// /token that checks PKCE S256 and signs an RS256 ID token with the request's
// nonce), served on 127.0.0.1:PORT with issuer http://127.0.0.1:PORT.
//
// Who signs in is chosen by the browser: a cookie `who` on the provider's
// origin, JSON such as {"email":"ana@example.com"}, read when /authorize is
// visited and applied to the ID token issued for that code. Tests of refused
// tokens add one of: "email_verified": false, "nonce": "…", "aud": "…",
// "expired": true, "foreign_key": "unknown-kid" | "same-kid" (signed by a key
// outside the JWKS).
// POST /__rotate adds a new signing key (tokens then alternate between keys).
//
// Usage: node provider.mjs PORT   (prints "ready http://127.0.0.1:PORT")
import http from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';
import crypto from 'node:crypto';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const issuer = new OAuth2Issuer();
await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);
const foreign = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });

// code -> who signs in with it
const byCode = new Map();

function who(req) {
  const cookies = req.headers.cookie ?? '';
  for (const part of cookies.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === 'who') {
      try {
        return JSON.parse(decodeURIComponent(rest.join('=')));
      } catch {
        return {};
      }
    }
  }
  return {};
}

service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code) byCode.set(code, who(req));
});

service.on('beforeTokenSigning', (token, req) => {
  // The access token carries a scope; the ID token does not.
  if (token.payload.scope !== undefined) return;
  const person = byCode.get(req.body?.code) ?? {};
  const email = person.email ?? 'you@example.com';
  Object.assign(token.payload, {
    sub: person.sub ?? `sub-${email}`,
    email,
    email_verified: person.email_verified ?? true,
    name: person.name ?? email.split('@')[0],
  });
  if (person.nonce !== undefined) token.payload.nonce = person.nonce;
  if (person.aud !== undefined) token.payload.aud = person.aud;
  if (person.expired) {
    const now = Math.floor(Date.now() / 1000);
    token.payload.iat = now - 7200;
    token.payload.nbf = now - 7200;
    token.payload.exp = now - 3600;
  }
});

service.on('beforeResponse', (response, req) => {
  const person = byCode.get(req.body?.code) ?? {};
  byCode.delete(req.body?.code);
  if (person.foreign_key && response.body.id_token) {
    response.body.id_token = forge(response.body.id_token, person.foreign_key);
  }
});

// The same claims signed by a key the JWKS never lists: under a key id the
// provider does not have ("unknown-kid"), or under the provider's own key id
// ("same-kid", a forgery). node:crypto signs synchronously, as the hook must.
function forge(idToken, how) {
  const [headerPart, payloadPart] = idToken.split('.');
  const header = JSON.parse(Buffer.from(headerPart, 'base64url').toString());
  if (how !== 'same-kid') header.kid = 'not-in-the-jwks';
  const head = Buffer.from(JSON.stringify(header)).toString('base64url');
  const signed = `${head}.${payloadPart}`;
  const signature = crypto.sign('sha256', Buffer.from(signed), foreign.privateKey);
  return `${signed}.${signature.toString('base64url')}`;
}

const handler = service.requestHandler;
const server = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate') {
    const key = await issuer.keys.generate('RS256');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: key.kid }));
    return;
  }
  handler(req, res);
});
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  issuer.url = `http://127.0.0.1:${address.port}`;
  console.log(`ready ${issuer.url}`);
});
