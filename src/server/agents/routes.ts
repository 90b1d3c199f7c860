import type { FastifyInstance } from 'fastify';
import type { ServerConfig } from '../../shared/config/server-config.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import { readAgentConfig } from '../config/agent-config-loader.js';
import { scoped } from '../feed/auth.js';
import { errors, noQuerySchema, routeSchema } from '../feed/schemas.js';
import type { ServerModule } from '../module.js';
import type { AgentRecord, AgentRegistry } from './agent-registry.js';
import type { AgentConnections } from './connections.js';

// GET /api/v1/agents and /api/v1/agents/:name (feed token, scope read): what
// each agent is doing, for people rather than for administration (the admin
// routes manage agents and tokens). Agents are the core's, so the routes are
// here; each module fills in its own part (ServerModule.agentStatus) under
// module_status.<name>: GitOps its projects' last syncs.

export interface AgentRoutesDeps {
  agents: AgentRegistry;
  tokens: FeedTokens;
  connections: AgentConnections;
  config: ServerConfig;
  modules: readonly ServerModule[];
}

const NAME = { type: 'string', pattern: '^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$', description: "the agent's name" } as const;
const nullableTime = { type: ['string', 'null'], format: 'date-time' } as const;
const finding = {
  type: 'object',
  properties: { file: { type: 'string' }, line: { type: 'integer' }, path: { type: 'string' }, message: { type: 'string' } },
  required: ['file', 'line', 'path', 'message'],
  additionalProperties: false,
} as const;

function agentSchema(modules: readonly ServerModule[]) {
  const withStatus = modules.filter((m) => m.agentStatus);
  return {
    type: 'object',
    properties: {
      name: { type: 'string' },
      created_at: { type: 'string', format: 'date-time' },
      connection: {
        type: 'object',
        description: "the agent's calls to this server: connected while one is open",
        properties: {
          connected: { type: 'boolean' },
          since: {
            ...nullableTime,
            description: 'connected: since the first open call; not connected: since the last call ended; null: no call since this server started',
          },
          version: { type: ['string', 'null'], description: 'the Verdict version the agent sent with its latest call' },
        },
        required: ['connected', 'since', 'version'],
        additionalProperties: false,
      },
      config: {
        type: ['object', 'null'],
        description:
          'the config.yaml commit this server last sent the agent (null until it opens its configuration stream here), its warnings, and a later commit that does not validate',
        properties: {
          commit_id: { type: ['string', 'null'] },
          warnings: { type: 'array', items: finding },
          invalid: {
            type: 'object',
            properties: { commit_id: { type: 'string' }, error: { type: 'string' } },
            required: ['commit_id', 'error'],
            additionalProperties: false,
          },
          updated_at: { type: 'string', format: 'date-time' },
        },
        required: ['commit_id', 'warnings', 'updated_at'],
        additionalProperties: false,
      },
      modules: {
        type: 'array',
        items: { type: 'string', enum: modules.map((m) => m.name) },
        description: 'the modules whose block config.yaml has at the config commit (the agent runs these); empty while config is null',
      },
      module_status: {
        type: 'object',
        description: 'what each module reports for the agent',
        properties: Object.fromEntries(withStatus.map((m) => [m.name, m.agentStatus!.schema])),
        additionalProperties: false,
      },
    },
    required: ['name', 'created_at', 'connection', 'config', 'modules', 'module_status'],
    additionalProperties: false,
  } as const;
}

export function registerAgentRoutes(app: FastifyInstance, deps: AgentRoutesDeps): void {
  const read = scoped(deps.tokens, 'read');
  const schema = agentSchema(deps.modules);
  /** The modules the commit's config.yaml configures (one read per commit, shared with every other reader of it). */
  async function configuredModules(a: AgentRecord, commit: string | null | undefined): Promise<string[]> {
    if (!commit) return [];
    try {
      const read = await readAgentConfig(a.config_project, a.name, commit);
      // The commit was sent, so it validated then; a project rewritten since leaves the list empty.
      if (read.state !== 'valid') return [];
      return deps.modules.filter((m) => (read.config as Record<string, unknown>)[m.name] !== undefined).map((m) => m.name);
    } catch {
      // git failed: the list is empty in this answer, and the next one reads again.
      return [];
    }
  }

  async function view(a: AgentRecord) {
    const conn = deps.connections.status(a.name);
    const config = deps.agents.configStatus(a.name) ?? null;
    return {
      name: a.name,
      created_at: a.created_at,
      connection: { connected: conn?.connected ?? false, since: conn?.since ?? null, version: conn?.version ?? null },
      config,
      modules: await configuredModules(a, config?.commit_id),
      module_status: Object.fromEntries(deps.modules.filter((m) => m.agentStatus).map((m) => [m.name, m.agentStatus!.view(deps.config, a.name)])),
    };
  }

  app.get(
    '/api/v1/agents',
    {
      ...read,
      schema: routeSchema({
        summary: 'List agents with their status',
        querystring: noQuerySchema,
        description:
          "Each registered agent: its connection to this server, version, configuration commit, modules, and each module's status (GitOps: every manifest project's last sync).",
        response: {
          200: { type: 'object', properties: { agents: { type: 'array', items: schema } }, required: ['agents'], additionalProperties: false },
          ...errors(401, 403),
        },
      }),
    },
    async () => ({ agents: await Promise.all(deps.agents.list().map((a) => view(a))) }),
  );

  app.get(
    '/api/v1/agents/:name',
    {
      ...read,
      schema: routeSchema({
        summary: 'One agent with its status',
        description: 'As in the list.',
        params: { type: 'object', properties: { name: NAME }, required: ['name'] },
        response: { 200: schema, ...errors(400, 401, 403, 404) },
      }),
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      const a = deps.agents.get(name);
      if (!a) return reply.code(404).send({ error: 'not_found', message: `no agent named "${name}"; GET /api/v1/agents lists them` });
      return view(a);
    },
  );
}
