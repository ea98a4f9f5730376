// The one entry point of the vendored bundle: what the demos' own demo.js imports.
export { default as Uppy } from "@uppy/core";
export { default as Dashboard } from "@uppy/dashboard";
export { default as Tus } from "@uppy/tus";
