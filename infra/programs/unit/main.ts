import { unitProgram } from './index.js';

export default () => unitProgram();
