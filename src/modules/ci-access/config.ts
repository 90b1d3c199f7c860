import { namespaceName, projectId } from '../../shared/config/gitlab-agent.js';
import { bool, exactlyOne, field, list, obj, str, type Validator } from '../../shared/config/schema.js';

// The `ci_access` block of config.yaml: which projects and groups may reach the
// cluster through this agent from CI/CD jobs, with the GitLab agent's schema of
// every version (14.3 groups and projects, 14.5 `access_as`, 15.7
// `environments`, 17.3 `protected_branches_only`, 17.11 `instance`), checked
// with the original's rules. The server decides with it who may use the agent
// (access.ts); the agent part runs while the block is present.

// GitLab's block: open, so a key of a later GitLab version is a warning, not a refusal.
const open = { open: true };
const emptyMessage = obj({}, open);
// Except a misspelt key: an entry's keys restrict a job (environments,
// protected_branches_only) or set whom it acts as, and one dropped as unknown
// would let through jobs the file means to refuse.
const restricting = { open: true, misspeltIsError: 'a misspelt restriction would be ignored and widen access' };
const identity = { open: true, misspeltIsError: 'a misspelt key would be ignored and change whom the job acts as' };

/** Whom requests from CI/CD jobs act as: exactly one of agent, impersonate, ci_job. */
const accessAs = exactlyOne(
  {
    agent: field(emptyMessage),
    impersonate: field(
      obj(
        {
          username: field(str({ nonEmpty: true }), { required: true }),
          groups: field(list(str({ nonEmpty: true }))),
          uid: field(str()),
          extra: field(
            list(
              obj(
                {
                  key: field(str({ nonEmpty: true }), { required: true }),
                  val: field(list(str({ nonEmpty: true }), { min: 1 }), { required: true }),
                },
                identity,
              ),
            ),
          ),
        },
        identity,
      ),
    ),
    ci_job: field(emptyMessage),
  },
  'access_as: {ci_job: {}}',
);

const accessRules = {
  default_namespace: field(namespaceName),
  access_as: field(accessAs),
  environments: field(list(str({ nonEmpty: true }))),
  protected_branches_only: field(bool()),
};

const accessEntry = obj({ id: field(projectId, { required: true }), ...accessRules }, { ...restricting, example: '- id: group/project' });

export const ciAccessSchema = obj(
  {
    projects: field(list(accessEntry), { default: [] }),
    groups: field(list(accessEntry), { default: [] }),
    /** 17.11: every project of the instance, once an administrator allows it. */
    instance: field(obj(accessRules, restricting)),
  },
  open,
);

export type CiAccessConfig = typeof ciAccessSchema extends Validator<infer T> ? T : never;

export const ciAccessBlock = ciAccessSchema;
