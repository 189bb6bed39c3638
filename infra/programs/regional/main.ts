import { regionalProgram } from './index.js';

export default () => regionalProgram();
