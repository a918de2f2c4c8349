// A real OAuth 2.0 / OpenID Connect provider (panva/node-oidc-provider, from npm) for
// rapport's tests, on loopback. Configured like the providers rapport meets: the
// authorization code grant with PKCE, refresh tokens that rotate on every use (reuse
// of a spent one revokes the grant, as Google and Microsoft may), RFC 7009 revocation,
// RFC 7662 introspection (for a mail server that checks tokens: client `dovecot`),
// short-lived access tokens, and an `email` claim. Its development interactions (a
// login form that accepts any login, then a consent form) stand in for the person.
//
// Usage: node provider.mjs <port> <redirect-uri> [access-token-ttl-seconds]
// Prints `ready <issuer>` once it listens.
import Provider from "oidc-provider";

const [port, redirectUri, accessTtl = "3600"] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "rapport",
      client_secret: "rapport-test-secret",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
    // Staff sign-in (OpenID Connect): rapport's sign-in callback beside the
    // connections one, authenticating with HTTP Basic as Google and Microsoft allow.
    {
      client_id: "rapport-signin",
      client_secret: "rapport-signin-secret",
      redirect_uris: [new URL("/signin/oidc/callback", redirectUri).href],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
    // A resource server (a mail server) that checks tokens by introspection (RFC 7662).
    {
      client_id: "dovecot",
      client_secret: "dovecot-test-secret",
      redirect_uris: [],
      grant_types: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { required: () => true },
  scopes: ["openid", "offline_access", "email", "profile", "activities.read"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  // Paths as rapport's example-oauth connector declares them ({base_url}/oauth/...).
  routes: {
    authorization: "/oauth/authorize",
    token: "/oauth/token",
    revocation: "/oauth/revoke",
    userinfo: "/oauth/userinfo",
    introspection: "/oauth/introspect",
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  // Refresh tokens rotate on every use.
  rotateRefreshToken: true,
  // offline_access (a refresh token) without a separate prompt=consent round.
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access"),
  ttl: {
    AccessToken: Number(accessTtl),
    AuthorizationCode: 60,
    Grant: 86400,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 86400,
  },
  loadExistingGrant: async (ctx) => {
    // Consent once: later authorizations of the same client reuse the grant.
    const grantId =
      ctx.oidc.result?.consent?.grantId ||
      ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: true }),
  }),
});
// Loopback over plain http: allow it, as a test provider.
provider.proxy = true;

// A resource server beside it, as the API an OAuth connector reads: GET
// /api/activities answers one page of client activity to a bearer token this provider
// issued and has not revoked (two items everyone sees, one of the token's account),
// and 401 to anything else.
provider.use(async (ctx, next) => {
  if (ctx.path !== "/api/activities") return next();
  const header = ctx.get("authorization") || "";
  const bearer = header.startsWith("Bearer ") ? header.slice(7) : "";
  const token = bearer ? await provider.AccessToken.find(bearer) : undefined;
  if (!token || token.isExpired) {
    ctx.status = 401;
    ctx.body = { error: "invalid_token" };
    return;
  }
  ctx.body = {
    items: [
      { id: "act-1", at: "2026-11-30T10:00:00Z", title: "Quarterly review with Acme", email: "cfo@acme.example" },
      { id: "act-2", at: "2026-12-01T15:30:00Z", title: "Renewal call booked", email: "cfo@acme.example" },
      // One item of the signed-in account's own, so a test can tell whose token a
      // sync used.
      { id: `own-${token.accountId}`, at: "2026-12-02T09:00:00Z", title: `Notes from ${token.accountId}`, email: "cfo@acme.example" },
    ],
    next: null,
    more: false,
  };
});

// Report refresh grants on stdout, so a test can count how many refresh tokens were
// rotated and whether one was ever spent twice.
provider.on("grant.success", (ctx) => {
  if (ctx.oidc.params?.grant_type === "refresh_token") console.log("refresh granted");
});
provider.on("grant.error", (ctx, error) => {
  if (ctx.oidc.params?.grant_type === "refresh_token") console.log(`refresh refused ${error.error}`);
});

const server = provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`ready ${issuer}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
