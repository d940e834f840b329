// A certified OpenID provider issuing JWT access tokens (RFC 9068, `typ: at+jwt`) for resource
// indicators (RFC 8707), on 127.0.0.1:$PORT: the peer for cognito-authz's OIDC issuers.
// Two resources: $RESOURCE (the API cognito-authz guards) and $OTHER_RESOURCE (someone else's).
// `amr` (RFC 8176): dev interactions take any password and record no factors, so the account name
// says how the user signed in: a login ending in `-otp` used a second factor (`["pwd","otp"]`),
// any other a password alone (`["pwd"]`).
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const resources = [process.env.RESOURCE, process.env.OTHER_RESOURCE];
const usernames = JSON.parse(process.env.USERNAMES || '{}');

// $JWKS (a private JWK Set), when given, is the provider's signing key: the tests can then stamp
// one of its own ID tokens as other providers issue theirs (`typ: JWT`), signed as it would be.
const jwks = process.env.JWKS ? JSON.parse(process.env.JWKS) : undefined;

const provider = new Provider(issuer, {
  ...(jwks ? { jwks } : {}),
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => process.env.RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (!resources.includes(resourceIndicator)) throw new errors.InvalidTarget();
        return { scope: 'api:read', audience: resourceIndicator, accessTokenFormat: 'jwt', accessTokenTTL: 600 };
      },
    },
  },
  scopes: ['openid', 'email'],
  // A login containing `admin` is in the provider's own `admin` group. $USERNAMES (a JSON object)
  // names some accounts otherwise: a provider may mint any `sub` and `preferred_username`, a staff
  // user's included, which is what the trust-boundary tests need.
  extraTokenClaims: async (ctx, token) => (
    token.kind === 'AccessToken'
      ? {
        amr: token.accountId.endsWith('-otp') ? ['pwd', 'otp'] : ['pwd'],
        preferred_username: usernames[token.accountId] ?? token.accountId,
        groups: token.accountId.includes('admin') ? ['admin'] : [],
      }
      : undefined
  ),
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true }),
  }),
});
provider.proxy = false;
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider (jwt access tokens) listening on ${issuer}`));
