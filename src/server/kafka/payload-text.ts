/**
 * The JSON text an agent payload was parsed from, by the parsed payload
 * object, set by the tunnel where it parses it. The Kafka log sink writes
 * that text into the log as it came instead of serialising the object again
 * (JSON.stringify of a payload costs about what parsing it did). Parsing the
 * text gives the object back, so every replica, reading it from the log,
 * projects what the accepting replica projects from the object. Payloads
 * without a text here (gitops, the WebSocket tunnel, tests) are serialised.
 */
export const payloadText = new WeakMap<object, string>();
