import { ConfigError, parseYamlConfig } from '../../src/shared/config/schema.js';
import { serverConfigSchema } from '../../src/shared/config/server-config.js';

/** What `verdict server --config` would report for this server.yaml, as `line: path: message`; [] when it is valid. */
export function serverConfigIssues(yaml: string): string[] {
  try {
    parseYamlConfig(yaml, 'server.yaml', serverConfigSchema);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
    throw e;
  }
  return [];
}
