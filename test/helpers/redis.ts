/** A real redis-server on a free loopback port (shared with the benchmark). */
export { startRedis, type TestRedis } from '../../bench/redis-server.js';
