import type { FastifyInstance } from 'fastify';
import type { ServerModuleAdminContext } from '../../server/module.js';
import { errors, noQuerySchema, routeSchema } from '../../server/feed/schemas.js';
import { rejectUnknownFields } from '../../server/feed/filters.js';
import { JobTokens, jobView, MAX_TTL_MS, MIN_TTL_MS } from './job-tokens.js';

// /api/v1/admin/ci-tokens: the operations of `verdict ci-tokens`, for
// automation that plays the CI server (issues a token per job, revokes it
// when the job ends). The secret is in the response to the call that creates
// it and nowhere else. On Kafka replicas the rows reach the other replicas
// like those the CLI writes (replica-sync.ts), so any replica may be asked.

const BASE = '/api/v1/admin/ci-tokens';

const jobSchema = {
  type: 'object',
  required: ['id', 'project', 'environment', 'ref', 'protected', 'created_at', 'expires_at', 'revoked_at', 'state'],
  additionalProperties: false,
  properties: {
    id: { type: 'integer', minimum: 1, description: 'the job id (user gitlab:ci_job:<id> with access_as ci_job)' },
    project: { type: 'string' },
    environment: { type: 'string', description: '"" when none' },
    ref: { type: 'string', description: '"" when none' },
    protected: { type: 'boolean' },
    created_at: { type: 'string', format: 'date-time' },
    expires_at: { type: 'string', format: 'date-time' },
    revoked_at: { type: ['string', 'null'], format: 'date-time' },
    state: { type: 'string', enum: ['active', 'expired', 'revoked'] },
  },
} as const;

// Job ids are below 2^40 (job-tokens.ts).
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1, maximum: 2 ** 40 } } } as const;

// Types and lengths only: what a token may be issued for is jobRefusal's rule
// (JobTokens.create applies it, as for the CLI), answered 400 in its words.
const createBody = {
  type: 'object',
  required: ['project'],
  additionalProperties: false,
  properties: {
    project: {
      type: 'string',
      maxLength: 255,
      description: "the job's project as ci_access names it (group/subgroup/project, or a numeric id)",
    },
    environment: { type: 'string', maxLength: 255, description: 'for ci_access environments rules' },
    ref: { type: 'string', maxLength: 255, description: 'the branch or tag the job runs on' },
    protected: { type: 'boolean', description: 'ref is a protected branch or tag (protected_branches_only); needs ref' },
    ttl_seconds: { type: 'integer', default: 3600, description: `lifetime in seconds: at least ${MIN_TTL_MS / 1000}, at most ${MAX_TTL_MS / 1000} (a day)` },
  },
} as const;

export function registerCiTokenRoutes(app: FastifyInstance, ctx: ServerModuleAdminContext): void {
  const jobs = new JobTokens(ctx.db);
  const admin = ctx.admin;
  const actor = (req: unknown) => (req as { feedToken?: { name: string } }).feedToken?.name ?? 'unknown';

  app.get(
    BASE,
    {
      ...admin,
      schema: routeSchema({
        summary: 'List CI job tokens',
        querystring: noQuerySchema,
        description: 'As `verdict ci-tokens list`: every job token not yet purged (a day after it expired), never the secrets.',
        response: {
          200: { type: 'object', required: ['tokens'], additionalProperties: false, properties: { tokens: { type: 'array', items: jobSchema } } },
          ...errors(401, 403),
        },
      }),
    },
    async () => ({ tokens: jobs.list().map((j) => jobView(j)) }),
  );

  app.post(
    BASE,
    {
      ...admin,
      preValidation: rejectUnknownFields(Object.keys(createBody.properties)),
      links: { 201: { RevokeCiToken: { operationRef: `#/paths/${BASE.replaceAll('/', '~1')}~1{id}/delete`, parameters: { id: '$response.body#/job/id' } } } },
      schema: routeSchema({
        summary: 'Create a CI job token',
        description:
          'As `verdict ci-tokens create`: the credential of one CI/CD job, for `verdict kubeconfig --ci-token`. The secret is in this response only.',
        body: createBody,
        response: {
          201: {
            type: 'object',
            required: ['token', 'job'],
            additionalProperties: false,
            properties: { token: { type: 'string', description: 'vdt_ci_…, shown in this response only' }, job: jobSchema },
          },
          ...errors(400, 401, 403),
        },
      }),
    },
    async (req, reply) => {
      const b = req.body as { project: string; environment?: string; ref?: string; protected?: boolean; ttl_seconds: number };
      const { token, job } = jobs.create({
        project: b.project,
        ttlMs: b.ttl_seconds * 1000,
        ...(b.environment ? { environment: b.environment } : {}),
        ...(b.ref ? { ref: b.ref } : {}),
        protected: Boolean(b.protected),
      });
      ctx.log.info({ ci_job_id: job.id, project: job.project, actor: actor(req) }, 'CI tunnel: created a job token');
      return reply.code(201).send({ token, job: jobView(job) });
    },
  );

  app.delete(
    `${BASE}/:id`,
    {
      ...admin,
      schema: routeSchema({
        summary: 'Revoke a CI job token',
        description:
          'As `verdict ci-tokens revoke`: requests with the token are refused with 401 from now on, and its open ones (watches, logs -f, exec) end within about a second.',
        params: idParams,
        response: {
          200: { type: 'object', required: ['revoked'], additionalProperties: false, properties: { revoked: { type: 'integer' } } },
          ...errors(400, 401, 403, 404),
        },
      }),
    },
    async (req, reply) => {
      const { id } = req.params as { id: number };
      if (!jobs.revoke(id)) return reply.code(404).send({ error: 'not_found', message: `no active CI job token with id ${id}; list them with GET ${BASE}` });
      ctx.log.warn({ ci_job_id: id, actor: actor(req) }, 'CI tunnel: revoked a job token');
      return { revoked: id };
    },
  );
}
