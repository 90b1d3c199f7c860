import { ConfigError, parseYamlConfig, type Validator } from '../../src/shared/config/schema.js';
import { serverConfigSchema } from '../../src/shared/config/server-config.js';

/** What parsing this YAML with `schema` reports, as `line: path: message`; [] when it is valid. */
export function configIssues<T>(yaml: string, schema: Validator<T>, file = 'f.yaml'): string[] {
  try {
    parseYamlConfig(yaml, file, schema);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
    throw e;
  }
  return [];
}

/** What `verdict server --config` would report for this server.yaml, as `line: path: message`; [] when it is valid. */
export function serverConfigIssues(yaml: string): string[] {
  return configIssues(yaml, serverConfigSchema, 'server.yaml');
}
