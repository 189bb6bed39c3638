import { globalProgram } from './index.js';

export default () => globalProgram();
