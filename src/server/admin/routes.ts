import type { FastifyInstance } from 'fastify';
import { isAbsolute } from 'node:path';
import { VerdictError } from '../../shared/errors.js';
import { isRepositoryUrl } from '../agents/config-project.js';
import type { Logger } from '../../shared/log/logger.js';
import type { AgentRegistry } from '../agents/agent-registry.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import { scoped } from '../feed/auth.js';
import { rejectUnknownFields } from '../feed/filters.js';
import { adminResponses, noQuerySchema, routeSchema } from '../feed/schemas.js';

// Agent and agent-token management over HTTP, the same operations as
// `verdict agents …`, for automation. Every route needs a feed token with
// scope admin (`verdict tokens create --name ops --scope admin`). Secrets are
// in the response to the call that creates them and nowhere else.

export interface AdminDeps {
  agents: AgentRegistry;
  tokens: FeedTokens;
  /** Open agent streams, so a revocation or a move to another configuration project over the API takes effect at once. */
  streams: { drop(tokenId: number): number; endConfigStreams(agent: string, project: string): number };
  log: Logger;
}

// The registry's own rules (agent-registry.ts), so the schema refuses what the registry would.
const NAME = {
  type: 'string',
  pattern: '^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$',
  description: 'a DNS label: lowercase letters, digits and dashes, as in .gitlab/agents/<name>/',
} as const;
const TOKEN_NAME = { type: 'string', pattern: '^[A-Za-z0-9_.@-]{1,64}$', description: '1 to 64 letters, digits, dots, dashes, underscores or @' } as const;
const agentParams = { type: 'object', properties: { agent: NAME }, required: ['agent'] } as const;
const CONFIG_PROJECT = {
  type: 'string',
  minLength: 1,
  description:
    'absolute path on the server of the top of the git repository holding .gitlab/agents/<name>/config.yaml; 400 for a URL, a relative path, a path that does not exist or is not the top of a git repository',
} as const;
const agentRecord = {
  type: 'object',
  properties: { id: { type: 'integer' }, name: { type: 'string' }, config_project: { type: 'string' }, created_at: { type: 'string' } },
} as const;
const notes = {
  type: 'array',
  items: { type: 'string' },
  description: 'what the configuration project still lacks (no commit, or no config.yaml for the agent, yet): the agent waits for it',
} as const;
// Responses: the agent and token views are those of `verdict agents …`, left open in the schemas.

// The registry's refusals are VerdictErrors (VERDICT_BAD_REQUEST, VERDICT_NOT_FOUND): the feed's error handler
// answers them (400 bad_request, 404 not_found, with the message).

export function registerAdminRoutes(app: FastifyInstance, deps: AdminDeps): void {
  const admin = scoped(deps.tokens, 'admin');
  const actor = (req: unknown) => (req as { feedToken?: { name: string } }).feedToken?.name ?? 'unknown';

  app.get(
    '/api/v1/admin/agents',
    {
      ...admin,
      schema: routeSchema({
        summary: 'List agents',
        querystring: noQuerySchema,
        description:
          "Each with `config`: the commit of config.yaml this server last sent it, that file's warnings, and a later commit that does not validate; null until the agent opens its configuration stream here.",
        response: adminResponses(200),
      }),
    },
    async () => ({ agents: deps.agents.list().map((a) => ({ ...a, config: deps.agents.configStatus(a.name) ?? null })) }),
  );

  // OpenAPI links: the agent a registration answers is named by agent.name (not its id) in the routes under it.
  const byName = { agent: '$response.body#/agent/name' };
  const op = (path: string, method: string) => `#/paths/${path.replaceAll('/', '~1')}/${method}`;
  app.post(
    '/api/v1/admin/agents',
    {
      ...admin,
      preValidation: rejectUnknownFields(['name', 'config_project', 'token_name']),
      links: {
        201: {
          ListTokens: { operationRef: op('/api/v1/admin/agents/{agent}/tokens', 'get'), parameters: byName },
          CreateToken: { operationRef: op('/api/v1/admin/agents/{agent}/tokens', 'post'), parameters: byName },
          RevokeToken: { operationRef: op('/api/v1/admin/agents/{agent}/tokens/{id}', 'delete'), parameters: { ...byName, id: '$response.body#/token/id' } },
          SetConfigProject: { operationRef: op('/api/v1/admin/agents/{agent}', 'patch'), parameters: byName },
        },
      },
      schema: routeSchema({
        summary: 'Register an agent',
        description:
          'Answers with its first token; the secret is in this response only. An agent already registered is 409: add a token to it with POST /api/v1/admin/agents/{agent}/tokens, move it to another configuration project with PATCH /api/v1/admin/agents/{agent}.',
        response: {
          ...adminResponses(201, 400, 409),
          201: {
            type: 'object',
            properties: {
              agent: agentRecord,
              token: {
                type: 'object',
                properties: { id: { type: 'integer' }, name: { type: 'string' }, secret: { type: 'string', description: 'shown in this response only' } },
              },
              notes,
            },
          },
        },
        body: {
          type: 'object',
          required: ['name', 'config_project'],
          additionalProperties: false,
          properties: {
            name: NAME,
            config_project: CONFIG_PROJECT,
            token_name: TOKEN_NAME,
          },
        },
      }),
    },
    async (req, reply) => {
      const body = req.body as { name: string; config_project: string; token_name?: string };
      const r = await deps.agents.registerChecked(body.name, absoluteProject(body.config_project), body.token_name ?? 'default');
      deps.log.info({ agent_name: body.name, token_id: r.tokenId, actor: actor(req) }, 'Registered an agent');
      return reply.code(201).send({ agent: r.agent, token: { id: r.tokenId, name: body.token_name ?? 'default', secret: r.token }, notes: r.notes });
    },
  );

  // The agent keeps its name, so its tokens and its alerts (stored by agent name) stay with it.
  app.patch(
    '/api/v1/admin/agents/:agent',
    {
      ...admin,
      preValidation: rejectUnknownFields(['config_project']),
      schema: routeSchema({
        summary: "Change an agent's configuration project",
        description:
          'Checked as at registration (400 and the same notes). The agent keeps its tokens and alerts; a connected agent is served the new configuration project at once, without a restart.',
        params: agentParams,
        body: { type: 'object', required: ['config_project'], additionalProperties: false, properties: { config_project: CONFIG_PROJECT } },
        response: {
          ...adminResponses(200, 400, 404),
          200: { type: 'object', properties: { agent: agentRecord, notes }, required: ['agent', 'notes'] },
        },
      }),
    },
    async (req) => {
      const name = (req.params as { agent: string }).agent;
      const r = await deps.agents.setConfigProjectChecked(name, absoluteProject((req.body as { config_project: string }).config_project));
      // A PATCH to the project it has changes nothing here (it is still published, for replicas that hold another).
      if (r.from !== r.agent.config_project) {
        deps.streams.endConfigStreams(name, r.agent.config_project);
        deps.log.info({ agent_name: name, from: r.from, to: r.agent.config_project, actor: actor(req) }, 'Agents: changed the configuration project');
      }
      return { agent: r.agent, notes: r.notes };
    },
  );

  app.get(
    '/api/v1/admin/agents/:agent/tokens',
    {
      ...admin,
      schema: routeSchema({ summary: "List an agent's tokens", params: agentParams, response: adminResponses(200, 400, 404) }),
    },
    async (req) => ({ tokens: deps.agents.listTokens((req.params as { agent: string }).agent) }),
  );

  app.post(
    '/api/v1/admin/agents/:agent/tokens',
    {
      ...admin,
      preValidation: rejectUnknownFields(['name']),
      schema: routeSchema({
        summary: 'Create a token for an agent',
        description: 'The secret is in this response only.',
        params: agentParams,
        body: { type: ['object', 'null'], additionalProperties: false, properties: { name: TOKEN_NAME } },
        response: adminResponses(201, 400, 404),
      }),
    },
    async (req, reply) => {
      const agent = (req.params as { agent: string }).agent;
      const { token, info } = deps.agents.createToken(agent, (req.body as { name?: string } | null)?.name ?? 'default');
      deps.log.info({ agent_name: agent, token_id: info.id, actor: actor(req) }, 'Created an agent token');
      return reply.code(201).send({ token: { ...info, secret: token } });
    },
  );

  app.delete(
    '/api/v1/admin/agents/:agent/tokens/:id',
    {
      ...admin,
      schema: routeSchema({
        summary: "Revoke an agent's token",
        description: "The agent's next call fails with Unauthenticated, and its open streams are closed now.",
        params: { type: 'object', properties: { agent: NAME, id: { type: 'integer', minimum: 1 } }, required: ['agent', 'id'] },
        response: adminResponses(200, 400, 404),
      }),
    },
    async (req, reply) => {
      const { agent, id } = req.params as { agent: string; id: number };
      if (!deps.agents.revokeToken(agent, id)) {
        return reply
          .code(404)
          .send({ error: 'not_found', message: `agent "${agent}" has no active token ${id}; list them with GET /api/v1/admin/agents/${agent}/tokens` });
      }
      const dropped = deps.streams.drop(id);
      deps.log.warn({ agent_name: agent, token_id: id, streams: dropped, actor: actor(req) }, 'Revoked an agent token and closed its open streams');
      return { revoked: id, closed_streams: dropped };
    },
  );
}

/**
 * A relative config_project would be taken from the server's working directory, which the caller cannot see (and
 * which differs between Kafka replicas); the CLI resolves one from its own, as a shell user expects.
 */
function absoluteProject(path: string): string {
  // A URL: the registry's check explains those.
  if (isAbsolute(path) || isRepositoryUrl(path)) return path;
  throw new VerdictError(
    'VERDICT_BAD_REQUEST',
    `configuration project ${JSON.stringify(path)} is a relative path; give its absolute path on the server, e.g. /srv/git/infra`,
  );
}
