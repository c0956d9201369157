// node oidc-provider configured like ecard's provider, the peer of scripts/bench/bench_oidc.py:
// code flow only, PKCE S256, pairwise subjects, ES256 ID tokens, refresh tokens rotated on use,
// revocation, introspection, device flow, RP-initiated logout, in-memory storage.
// GET /interaction/:uid stands in for the app describing the request (ecard's
// GET /holder/v1/logins/{id}: who asks, for what); POST /interaction/:uid/approve for the holder
// approving in the app.  A refresh token is issued at every login (issueRefreshToken) and rotated
// on every use (rotateRefreshToken), as ecard does; PKCE is required and oidc-provider accepts
// only S256.  The approval carries the holder's password (step-up), checked against an argon2id
// hash with ecard's parameters (ecard/crypto/passwords.py: 19 MiB, 2 passes, 1 lane), as ecard's
// POST /holder/v1/logins/{id}/approve does.
import crypto from 'node:crypto';
import argon2 from 'argon2';
import http from 'node:http';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

// The default in-memory adapter keeps only 1,000 entries (each login makes six or so), which
// would evict codes prepared for the redemption run; give it room like ecard's in-process store.
const storage = new LRU({ maxSize: 1_000_000 });
class RoomyMemoryAdapter extends MemoryAdapter {
  constructor(model) { super(model, storage); }
}

const port = Number(process.env.PORT || 3000);
const issuer = `http://127.0.0.1:${port}`;
const clientSecret = process.env.CLIENT_SECRET || 'bench-secret-bench-secret-bench-secret';
const redirectUri = process.env.REDIRECT_URI || 'https://rp.example.test/callback';
const pairwiseSalt = crypto.randomBytes(32);
const holderPasswordHash = await argon2.hash(process.env.HOLDER_PASSWORD || '135790', {
  type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1, hashLength: 32,
});

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bench-rp',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: ['https://rp.example.test/signed-out'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
    subject_type: 'pairwise',
    scope: 'openid profile ecard',
  }],
  adapter: RoomyMemoryAdapter,
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'ecard'],
  claims: { openid: ['sub'], profile: ['name'], ecard: ['card_status', 'issuer_region', 'ecard_pseudonym'] },
  findAccount: async (ctx, accountId) => ({
    accountId,
    claims: async () => ({ sub: accountId, name: '张*三', card_status: 'active', issuer_region: '330000', ecard_pseudonym: 'p' }),
  }),
  subjectTypes: ['pairwise'],
  pairwiseIdentifier: async (ctx, accountId, client) => crypto.createHmac('sha256', pairwiseSalt)
    .update(`${client.sectorIdentifier}|${accountId}`).digest('base64url'),
  issueRefreshToken: async () => true,
  rotateRefreshToken: true,
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    deviceFlow: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 30 * 86400, Interaction: 120, Session: 600, Grant: 600 },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

const callback = provider.callback();
http.createServer(async (req, res) => {
  if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(req.url)) {
    try {
      const details = await provider.interactionDetails(req, res);
      const client = await provider.Client.find(details.params.client_id);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({
        client_id: client.clientId, client_name: client.clientName || client.clientId,
        scope: details.params.scope, prompt: details.prompt.name,
      }));
    } catch (error) {
      res.statusCode = 400;
      res.end(String(error));
    }
    return;
  }
  if (req.method === 'POST' && /^\/interaction\/[^/]+\/approve$/.test(req.url)) {
    try {
      const { password } = JSON.parse((await body(req)) || '{}');
      if (typeof password !== 'string' || !(await argon2.verify(holderPasswordHash, password))) {
        res.statusCode = 403;
        res.end('wrong password');
        return;
      }
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId: 'holder-1', clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { login: { accountId: 'holder-1' }, consent: { grantId } });
    } catch (error) {
      res.statusCode = 400;
      res.end(String(error));
    }
    return;
  }
  callback(req, res);
}).listen(port, '127.0.0.1', () => console.log(`peer listening on ${issuer}`));
