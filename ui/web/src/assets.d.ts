// esbuild bundles CSS imports into dist/assets/*.css; TypeScript only needs to know they exist.
declare module "*.css";
