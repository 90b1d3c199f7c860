/** Where an agent's config.yaml lives in its configuration project, as in the original. */
export function configPath(agentName: string): string {
  return `.gitlab/agents/${agentName}/config.yaml`;
}
