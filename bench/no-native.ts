// Imported first by the codec benchmark: msgpackr must run its pure JavaScript path (its native
// string extractor is an optional dependency that production installs may not have).
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED = 'true';
