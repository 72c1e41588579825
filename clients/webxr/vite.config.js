// Vite builds the client into dist/, which the Python server serves at "/".
// Relative asset paths let the same build work under any path prefix.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 1024, // kB; three.js alone is most of it
    rollupOptions: {
      output: { manualChunks: { three: ["three"] } },
    },
  },
  server: {
    host: "127.0.0.1",
    proxy: { "/api": "http://127.0.0.1:8080", "/healthz": "http://127.0.0.1:8080" },
  },
});
